ALTER TABLE orders DROP COLUMN refunded;
