-- pgbench: the database work of one POST /orders, statement by statement and
-- transaction by transaction as the four services issue it (see
-- bench/README.md), against one scratch database that holds all their
-- tables. tps = orders/s: the most the database alone allows.
-- Checking the caller's token is no database work (each service verifies
-- it against user-service's key set, fetched once and cached), so nothing
-- here stands for it.
-- Variables: -D first=<lowest user id> -D last=<highest user id>.
-- -M prepared needs explicit casts on every variable.
\set uid random(:first, :last)
\set price random(100, 100000)
-- the order saga's lease token: its writes are conditional on it
\set token random(1, 1000000000000)

-- user-service, GET /internal/users/{id} (the e-mail for the letter)
SELECT id, username, email, first_name, last_name, phone, created_at
  FROM users WHERE id = :uid::bigint AND status = 'active' LIMIT 1;

-- order-service, open the order leased to this request (one INSERT, no
-- transaction around it: the order has no Idempotency-Key)
INSERT INTO orders (user_id, price, status, lease_until, lease_token, created_at, updated_at)
  VALUES (:uid::bigint, :price::bigint, 'pending', now() + interval '10 seconds', :token::bigint, now(), now())
  RETURNING id AS oid, user_id, price, status, failure_reason, notified_at, attempts, letter_refusal, lease_token,
            refunded, created_at, updated_at \gset

-- billing-service, POST /internal/billing/accounts/{id}/withdraw: one
-- transaction: lock the account row, then read the reference's earlier
-- answer (a statement of its own, so it sees what the lock's previous holder
-- committed), the conditional UPDATE, then the ledger row (or the declined row)
BEGIN;
SELECT user_id FROM accounts WHERE user_id = :uid::bigint FOR UPDATE;
SELECT e.id, e.kind, e.amount, e.balance_after, e.created_at, d.amount, d.balance, d.reason
  FROM accounts a
  LEFT JOIN ledger_entries e ON e.user_id = a.user_id AND e.reference = 'order-' || :oid::bigint
  LEFT JOIN declined_withdrawals d ON d.user_id = a.user_id AND d.reference = 'order-' || :oid::bigint
 WHERE a.user_id = :uid::bigint;
WITH moved AS (
  UPDATE accounts SET balance = balance - :price::bigint, updated_at = now()
   WHERE user_id = :uid::bigint AND balance >= :price::bigint RETURNING balance)
SELECT count(*) AS paid, coalesce(max(balance), 0) AS bal FROM moved \gset
\if :paid
INSERT INTO ledger_entries (user_id, kind, amount, balance_after, reference, created_at)
  VALUES (:uid::bigint, 'withdrawal', :price::bigint, :bal::bigint, 'order-' || :oid::bigint, now()) RETURNING id;
\else
SELECT user_id, balance, updated_at FROM accounts WHERE user_id = :uid::bigint LIMIT 1;
INSERT INTO declined_withdrawals (user_id, reference, amount, balance, created_at)
  SELECT :uid::bigint, 'order-' || :oid::bigint, :price::bigint, balance, now() FROM accounts WHERE user_id = :uid::bigint;
\endif
COMMIT;

-- order-service, record the decision (conditional on still pending and on
-- the lease; no transaction around it: no key's answer to store with it)
UPDATE orders
   SET status = CASE WHEN :paid::int = 1 THEN 'paid' ELSE 'rejected' END,
       failure_reason = CASE WHEN :paid::int = 1 THEN NULL ELSE 'insufficient_funds' END,
       attempts = 0, updated_at = now()
 WHERE id = :oid::bigint AND status = 'pending' AND lease_token = :token::bigint
 RETURNING id, user_id, price, status, failure_reason, notified_at, attempts, letter_refusal, lease_token, refunded,
           created_at, updated_at;

-- notification-service, POST /internal/notifications: store once
INSERT INTO notifications (user_id, order_id, kind, email, subject, body, created_at)
  VALUES (:uid::bigint, :oid::bigint, CASE WHEN :paid::int = 1 THEN 'order_paid' ELSE 'order_rejected' END,
          'bench@example.com', 'Order #' || :oid::bigint || ' is decided',
          'Your order #' || :oid::bigint || ' for ' || (:price::bigint / 100.0)::numeric(20, 2) || ' is decided.', now())
  ON CONFLICT DO NOTHING
  RETURNING id, user_id, order_id, kind, email, subject, body, created_at;

-- order-service, mark the order notified and free it (conditional on its
-- status and on the lease)
UPDATE orders SET notified_at = now(), letter_refusal = NULL, lease_until = NULL, lease_token = NULL
 WHERE id = :oid::bigint AND notified_at IS NULL
   AND status = CASE WHEN :paid::int = 1 THEN 'paid' ELSE 'rejected' END AND lease_token = :token::bigint
 RETURNING id, user_id, price, status, failure_reason, notified_at, attempts, letter_refusal, lease_token, refunded,
           created_at, updated_at;
