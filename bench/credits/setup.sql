-- 10,000 tenants, each with an account holding 1,000,000 credits (bought through the ledger)
-- and daily/monthly limits high enough never to refuse a bench deduction.
INSERT INTO keen.users (id, email, username, password_hash)
SELECT md5('bench-' || n)::uuid, 'bench' || n || '@example.com', 'bench' || n, repeat('h', 32)
  FROM generate_series(1, 10000) AS n;
INSERT INTO keen.credit_accounts (user_id)
SELECT md5('bench-' || n)::uuid FROM generate_series(1, 10000) AS n
ON CONFLICT (user_id) DO NOTHING;
-- Five purchases each (one statement per round: a statement posts at most one entry per
-- account): some history, so that the statistics (and the generic plans of the
-- functions) see accounts with more than one entry, as in production.
INSERT INTO keen.credit_transactions (user_id, transaction_type, amount, description)
SELECT md5('bench-' || n)::uuid, 'purchase', 200000, 'bench funding' FROM generate_series(1, 10000) AS n;
INSERT INTO keen.credit_transactions (user_id, transaction_type, amount, description)
SELECT md5('bench-' || n)::uuid, 'purchase', 200000, 'bench funding' FROM generate_series(1, 10000) AS n;
INSERT INTO keen.credit_transactions (user_id, transaction_type, amount, description)
SELECT md5('bench-' || n)::uuid, 'purchase', 200000, 'bench funding' FROM generate_series(1, 10000) AS n;
INSERT INTO keen.credit_transactions (user_id, transaction_type, amount, description)
SELECT md5('bench-' || n)::uuid, 'purchase', 200000, 'bench funding' FROM generate_series(1, 10000) AS n;
INSERT INTO keen.credit_transactions (user_id, transaction_type, amount, description)
SELECT md5('bench-' || n)::uuid, 'purchase', 200000, 'bench funding' FROM generate_series(1, 10000) AS n;
UPDATE keen.credit_accounts SET daily_limit = 10000000, monthly_limit = 99999999;
VACUUM ANALYZE;
