-- Which switch process claimed an Idempotency-Key. A claim still in progress whose owner is
-- not the process asking (the owner died: a crash, a SIGKILL) may be taken over by a retry;
-- the operations derive the ids of what they create from the claim, so a retry that runs
-- again finds what the first run created instead of creating it twice.
ALTER TABLE api_idempotency_keys ADD COLUMN owner text;
