-- The pgbench ceiling's scratch data (psql -v users=N): N active users, each
-- with an account and its deposit; every tenth user is poor (the same rule
-- as bench/seed.py), so some orders are rejected here too.
INSERT INTO users (id, username, username_key, email, email_key, status, created_at)
  SELECT g, 'u' || g, 'u' || g, 'u' || g || '@example.com', 'u' || g || '@example.com', 'active', now()
  FROM generate_series(1, :users) g;
INSERT INTO accounts (user_id, balance, created_at, updated_at)
  SELECT g, CASE WHEN g % 10 = 0 THEN 50000 ELSE 1000000000000 END, now(), now()
  FROM generate_series(1, :users) g;
INSERT INTO ledger_entries (user_id, kind, amount, balance_after, reference, created_at)
  SELECT user_id, 'deposit', balance, balance, NULL, now() FROM accounts;
ANALYZE;
