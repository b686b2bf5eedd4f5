-- What a cancellation gave back (minor units; 0 when nothing was
-- charged); null until the order is cancelled. The cancel letter names it.
ALTER TABLE orders ADD COLUMN refunded BIGINT CHECK (refunded >= 0);
