-- Stations, pumps, grades and prices; orders, payments, pump sales; inboxes and the audit log.
-- Money is integer fen, volume integer mL, unit price integer milli-fen per litre.

CREATE TABLE grades (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    fuel        text NOT NULL CHECK (fuel IN ('gasoline', 'diesel', 'lpg', 'cng', 'other'))
);

CREATE TABLE stations (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    address     text NOT NULL DEFAULT '',
    lat_e6      integer NOT NULL CHECK (lat_e6 BETWEEN -90000000 AND 90000000),
    lon_e6      integer NOT NULL CHECK (lon_e6 BETWEEN -180000000 AND 180000000),
    timezone    text NOT NULL DEFAULT 'Asia/Shanghai',
    -- e.g. {"mon": [["06:00", "22:00"]], ...}; an empty object means always open
    opening_hours jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pumps (
    station_id  text NOT NULL REFERENCES stations (id),
    pump_no     integer NOT NULL CHECK (pump_no > 0),
    protocol    text NOT NULL CHECK (protocol IN ('gfd1-tcp', 'gfd1-rtu', 'dart')),
    endpoint    text NOT NULL,            -- host:port, or a serial device
    unit_id     integer NOT NULL,         -- Modbus unit id or DART address
    open        boolean NOT NULL DEFAULT true,
    PRIMARY KEY (station_id, pump_no)
);

CREATE TABLE nozzles (
    station_id  text NOT NULL,
    pump_no     integer NOT NULL,
    nozzle_no   integer NOT NULL CHECK (nozzle_no BETWEEN 1 AND 8),
    grade_code  text NOT NULL REFERENCES grades (code),
    PRIMARY KEY (station_id, pump_no, nozzle_no),
    FOREIGN KEY (station_id, pump_no) REFERENCES pumps (station_id, pump_no)
);

CREATE TABLE price_sets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station_id  text NOT NULL REFERENCES stations (id),
    status      text NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'staged', 'applied', 'superseded', 'cancelled')),
    effective_at timestamptz,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    applied_at  timestamptz
);
-- At most one price set in force per station.
CREATE UNIQUE INDEX price_sets_one_applied ON price_sets (station_id) WHERE status = 'applied';

CREATE TABLE price_set_items (
    price_set_id bigint NOT NULL REFERENCES price_sets (id),
    grade_code  text NOT NULL REFERENCES grades (code),
    unit_price_mfen_per_l bigint NOT NULL CHECK (unit_price_mfen_per_l > 0),
    PRIMARY KEY (price_set_id, grade_code)
);

CREATE TABLE orders (
    id          text PRIMARY KEY,
    customer_id text NOT NULL,
    station_id  text NOT NULL REFERENCES stations (id),
    pump_no     integer NOT NULL,
    flow        text NOT NULL CHECK (flow IN ('prepay', 'postpay')),
    preset_kind text CHECK (preset_kind IN ('amount', 'volume')),
    preset_value bigint CHECK (preset_value > 0),
    state       text NOT NULL,
    channel     text,
    price_set_id bigint REFERENCES price_sets (id),
    sale_id     text,
    held_fen    bigint NOT NULL DEFAULT 0 CHECK (held_fen >= 0),
    gross_fen   bigint NOT NULL DEFAULT 0 CHECK (gross_fen >= 0),
    discount_fen bigint NOT NULL DEFAULT 0 CHECK (discount_fen >= 0),
    captured_fen bigint NOT NULL DEFAULT 0 CHECK (captured_fen >= 0),
    released_fen bigint NOT NULL DEFAULT 0 CHECK (released_fen >= 0),
    refunded_fen bigint NOT NULL DEFAULT 0 CHECK (refunded_fen >= 0),
    routing     jsonb,                   -- the routing decision and its reasons
    terminal    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (refunded_fen <= captured_fen),
    CHECK (captured_fen + released_fen <= greatest(held_fen, captured_fen))
);
CREATE INDEX orders_live ON orders (station_id, pump_no) WHERE NOT terminal;
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC);

CREATE TABLE payment_attempts (
    id          text PRIMARY KEY,        -- '<order>-<attempt>'
    order_id    text NOT NULL REFERENCES orders (id),
    attempt_no  integer NOT NULL CHECK (attempt_no > 0),
    channel     text NOT NULL,           -- configured channel (provider + merchant)
    provider    text NOT NULL CHECK (provider IN ('wechatpay', 'alipay', 'unionpay')),
    operation   text NOT NULL
                CHECK (operation IN ('hold', 'query', 'capture', 'release', 'refund', 'close')),
    idempotency_key text NOT NULL UNIQUE,  -- out_trade_no / out_request_no / out_refund_no
    amount_fen  bigint NOT NULL CHECK (amount_fen >= 0),
    state       text NOT NULL DEFAULT 'requested'
                CHECK (state IN ('requested', 'approved', 'declined', 'pending', 'unknown',
                                 'failed', 'reversed')),
    provider_ref text,                   -- transaction_id / trade_no / queryId / auth_no
    reason      text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    UNIQUE (order_id, attempt_no, operation)
);
CREATE INDEX payment_attempts_unresolved ON payment_attempts (requested_at)
    WHERE state IN ('requested', 'pending', 'unknown');

CREATE TABLE pump_sales (
    sale_id     text PRIMARY KEY,
    station_id  text NOT NULL,
    pump_no     integer NOT NULL,
    nozzle_no   integer,
    token       bigint NOT NULL CHECK (token BETWEEN 0 AND 4294967295),
    pump_sale_seq bigint,                -- the pump's own sale number
    order_id    text REFERENCES orders (id),
    price_set_id bigint REFERENCES price_sets (id),
    unit_price_mfen_per_l bigint CHECK (unit_price_mfen_per_l > 0),
    preset_kind text CHECK (preset_kind IN ('amount', 'volume')),
    preset_value bigint,
    start_volume_total_ml bigint CHECK (start_volume_total_ml >= 0),
    end_volume_total_ml bigint,
    start_amount_total_fen bigint CHECK (start_amount_total_fen >= 0),
    end_amount_total_fen bigint,
    volume_ml   bigint CHECK (volume_ml >= 0),
    amount_fen  bigint CHECK (amount_fen >= 0),
    state       text NOT NULL CHECK (state IN ('auth_requested', 'authorized', 'fuelling',
                                               'completed', 'cleared', 'void', 'orphan')),
    end_reason  text,
    reconstructed boolean NOT NULL DEFAULT false,  -- finished from totals, not the sale block
    started_at  timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    cleared_at  timestamptz,
    UNIQUE (station_id, pump_no, token),
    FOREIGN KEY (station_id, pump_no) REFERENCES pumps (station_id, pump_no),
    CHECK (end_volume_total_ml IS NULL OR end_volume_total_ml >= start_volume_total_ml)
);
CREATE INDEX pump_sales_open ON pump_sales (station_id, pump_no)
    WHERE state NOT IN ('cleared', 'void');

CREATE TABLE callback_inbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider    text NOT NULL CHECK (provider IN ('wechatpay', 'alipay', 'unionpay')),
    event_id    text NOT NULL,           -- WeChat id / Alipay notify_id / UnionPay queryId
    status      text NOT NULL,           -- the provider's status in this event
    order_id    text,
    received_at timestamptz NOT NULL DEFAULT now(),
    body        bytea NOT NULL,          -- exactly as received
    headers     jsonb NOT NULL DEFAULT '{}'::jsonb,
    state       text NOT NULL DEFAULT 'received'
                CHECK (state IN ('received', 'applied', 'ignored', 'rejected')),
    result      text,
    processed_at timestamptz,
    UNIQUE (provider, event_id, status)
);
CREATE INDEX callback_inbox_pending ON callback_inbox (received_at) WHERE state = 'received';

CREATE TABLE api_idempotency_keys (
    principal   text NOT NULL,           -- whose key it is (customer or staff id)
    key         text NOT NULL,
    request_hash bytea NOT NULL,         -- SHA-256 of method, path and body
    status      integer,                 -- NULL while the first request is in progress
    response    bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX api_idempotency_keys_expiry ON api_idempotency_keys (expires_at);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,           -- 'uid:1000', 'staff:42', 'switch'
    action      text NOT NULL,
    target      text,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
