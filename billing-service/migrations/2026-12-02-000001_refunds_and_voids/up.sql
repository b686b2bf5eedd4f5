-- Cancelling an order gives its money back: a ledger entry of kind
-- 'refund' (reference refund-order-{id}). A CHECK cannot be altered in
-- place on SQLite: the kind moves to a new column with the new CHECK (both
-- engines drop a column's own CHECK with it).
ALTER TABLE ledger_entries ADD COLUMN entry_kind VARCHAR(16) NOT NULL DEFAULT 'deposit'
    CHECK (entry_kind IN ('deposit', 'withdrawal', 'refund'));
UPDATE ledger_entries SET entry_kind = kind;
ALTER TABLE ledger_entries DROP COLUMN kind;
ALTER TABLE ledger_entries RENAME COLUMN entry_kind TO kind;

-- A payment cancelled before it was made is voided: its reference is
-- closed with no money moved, so a withdrawal that arrives later under it
-- is declined. Kept beside the declines for insufficient funds: one
-- reference, one outcome that moved no money.
ALTER TABLE declined_withdrawals ADD COLUMN reason VARCHAR(32) NOT NULL DEFAULT 'insufficient_funds'
    CHECK (reason IN ('insufficient_funds', 'voided'));
