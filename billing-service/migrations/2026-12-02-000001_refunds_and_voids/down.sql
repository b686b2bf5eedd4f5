ALTER TABLE declined_withdrawals DROP COLUMN reason;
ALTER TABLE ledger_entries ADD COLUMN entry_kind VARCHAR(16) NOT NULL DEFAULT 'deposit'
    CHECK (entry_kind IN ('deposit', 'withdrawal'));
UPDATE ledger_entries SET entry_kind = kind;
ALTER TABLE ledger_entries DROP COLUMN kind;
ALTER TABLE ledger_entries RENAME COLUMN entry_kind TO kind;
