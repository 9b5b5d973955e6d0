-- What the order layer shows customers and operators besides the money columns of 0001: how
-- the customer pays, what was dispensed and at what price, and why an order ended without a
-- sale. The order's journal stream is the truth; these columns are its projection.

ALTER TABLE orders
    ADD COLUMN method       text NOT NULL DEFAULT '',
    ADD COLUMN payer_id     text NOT NULL DEFAULT '',
    ADD COLUMN nozzle_no    integer,
    ADD COLUMN coupon       text,
    ADD COLUMN grade        text,
    ADD COLUMN unit_price_mfen_per_l bigint CHECK (unit_price_mfen_per_l > 0),
    ADD COLUMN volume_ml    bigint NOT NULL DEFAULT 0 CHECK (volume_ml >= 0),
    ADD COLUMN pump_sale_seq bigint,
    ADD COLUMN hold_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN payment_key  text,
    ADD COLUMN client_data  jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN failure      text;

-- One live post-pay order per buffered pump sale: two customers can never pay the same fuel.
CREATE UNIQUE INDEX orders_postpay_sale ON orders (station_id, pump_no, pump_sale_seq)
    WHERE flow = 'postpay' AND state NOT IN ('failed', 'cancelled');

-- The sweeper's work list: refunds journaled by the callback path (late successes) that nobody
-- has sent yet, and attempts stuck without an answer.
CREATE INDEX payment_attempts_open_refunds ON payment_attempts (requested_at)
    WHERE operation = 'refund' AND state IN ('requested', 'pending', 'unknown');
