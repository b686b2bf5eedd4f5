DROP INDEX idempotency_keys_unanswered;
ALTER TABLE orders DROP COLUMN letter_refusal;
ALTER TABLE orders DROP COLUMN attempts;
ALTER TABLE orders DROP COLUMN lease_token;
ALTER TABLE orders ADD COLUMN state VARCHAR(16) NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'paid', 'rejected'));
UPDATE orders SET state = status;
ALTER TABLE orders DROP COLUMN status;
ALTER TABLE orders RENAME COLUMN state TO status;
