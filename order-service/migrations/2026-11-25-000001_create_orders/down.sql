DROP TABLE idempotency_keys;
DROP TABLE orders;
