-- Alerts for people (a valid callback for an unknown order, a late success refunded, a merchant
-- that is not ours), and what the callback path needs besides the tables of 0001.

CREATE TABLE alerts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,           -- stable code: 'callback_rejected', 'late_success', ...
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    subject     text,                    -- order id, channel name, provider
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    acknowledged_at timestamptz
);
CREATE INDEX alerts_open ON alerts (at) WHERE acknowledged_at IS NULL;
CREATE INDEX alerts_subject ON alerts (subject, at);

-- The inbox row names the attempt it moved (NULL for events that moved nothing), so that an
-- order's callbacks can be listed without decoding bodies.
ALTER TABLE callback_inbox ADD COLUMN attempt_id text REFERENCES payment_attempts (id);
CREATE INDEX callback_inbox_order ON callback_inbox (order_id, received_at);

-- An order's attempts by operation: the late-success refund and the release/capture events
-- that name only the hold look the order's other attempts up this way.
CREATE INDEX payment_attempts_order ON payment_attempts (order_id, operation, attempt_no);
