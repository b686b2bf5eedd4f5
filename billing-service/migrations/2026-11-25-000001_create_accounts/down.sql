DROP TABLE declined_withdrawals;
DROP TABLE ledger_entries;
DROP TABLE accounts;
