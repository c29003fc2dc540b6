-- 10,000 tenants, each with an account holding 1,000,000 credits (bought through the ledger)
-- and daily/monthly limits high enough never to refuse a bench deduction.
INSERT INTO keen.users (id, email, username, password_hash)
SELECT md5('bench-' || n)::uuid, 'bench' || n || '@example.com', 'bench' || n, repeat('h', 32)
  FROM generate_series(1, 10000) AS n;
INSERT INTO keen.credit_accounts (user_id)
SELECT md5('bench-' || n)::uuid FROM generate_series(1, 10000) AS n
ON CONFLICT (user_id) DO NOTHING;
-- Five purchases each, through the credit movement itself (keen.post_credit, what add_credits
-- and completed recharges run): some history, so that the statistics (and the generic plans
-- of the functions) see accounts with more than one entry, as in production.
SELECT count(keen.post_credit(md5('bench-' || n)::uuid, 200000, 'purchase', 'bench funding', NULL, NULL, NULL))
  FROM generate_series(1, 10000) AS n, generate_series(1, 5) AS round;
UPDATE keen.credit_accounts SET daily_limit = 10000000, monthly_limit = 99999999;
VACUUM ANALYZE;
