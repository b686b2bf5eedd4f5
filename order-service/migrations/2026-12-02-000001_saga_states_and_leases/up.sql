-- The order's states as SPEC.md lists them (cancelling and cancelled
-- included), a token that names the worker holding the lease, the count of
-- failed attempts (the recovery loop's backoff grows with it), and why the
-- last letter could not be stored when notification-service or
-- user-service refused it for good.
--
-- A CHECK cannot be altered in place on SQLite: the status moves to a new
-- column with the new CHECK (both engines drop a column's own CHECK with it).
ALTER TABLE orders ADD COLUMN state VARCHAR(16) NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'paid', 'rejected', 'cancelling', 'cancelled'));
UPDATE orders SET state = status;
ALTER TABLE orders DROP COLUMN status;
ALTER TABLE orders RENAME COLUMN state TO status;

ALTER TABLE orders ADD COLUMN lease_token BIGINT;
ALTER TABLE orders ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN letter_refusal VARCHAR(255);

-- Keys whose request has not stored its answer yet: the recovery loop
-- answers those whose order is decided.
CREATE INDEX idempotency_keys_unanswered ON idempotency_keys (resource_id) WHERE status_code IS NULL;
