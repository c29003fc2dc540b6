-- Data rules of daily_usage_stats and dashboard_metrics: every row that breaks one fails with
-- its constraint's SQLSTATE and name, and writes nothing.
BEGIN;
SELECT plan(8);

-- ===== fixtures (as the owner) ===============================================
-- The constraints are the last line of defence under the functions and triggers (whose
-- behaviour the domain's own test files cover): with this transaction's triggers off,
-- each rule below is proved by its constraint alone.
ALTER TABLE keen.users DISABLE TRIGGER USER;
ALTER TABLE keen.daily_usage_stats DISABLE TRIGGER USER;
INSERT INTO keen.users (id, email, username, password_hash) VALUES
  ('00000000-0000-4000-8000-00000000a11c', 'alice@example.com', 'alice', repeat('a', 32));
INSERT INTO keen.daily_usage_stats (user_id, date_bucket, sessions_started) VALUES
  ('00000000-0000-4000-8000-00000000a11c', '2026-01-01', 1);

-- ===== daily_usage_stats =====================================================
SELECT throws_ok(
  $$INSERT INTO keen.daily_usage_stats (user_id, date_bucket) VALUES ('00000000-0000-4000-8000-00000000a11c', '2026-01-01')$$,
  '23505', 'duplicate key value violates unique constraint "daily_usage_stats_pkey"',
  'one row per user and day');
SELECT throws_ok(
  $$INSERT INTO keen.daily_usage_stats (user_id, date_bucket, sessions_failed) VALUES ('00000000-0000-4000-8000-00000000a11c', '2026-01-02', -1)$$,
  '23514', 'new row for relation "daily_usage_stats" violates check constraint "daily_usage_stats_counts_check"',
  'session counts cannot be negative');
SELECT throws_ok(
  $$INSERT INTO keen.daily_usage_stats (user_id, date_bucket, credits_spent) VALUES ('00000000-0000-4000-8000-00000000a11c', '2026-01-02', -0.0001)$$,
  '23514', 'new row for relation "daily_usage_stats" violates check constraint "daily_usage_stats_counts_check"',
  'credit figures cannot be negative');
SELECT throws_ok(
  $$INSERT INTO keen.daily_usage_stats (user_id, date_bucket) VALUES ('00000000-0000-4000-8000-0000000000ff', '2026-01-02')$$,
  '23503', 'insert or update on table "daily_usage_stats" violates foreign key constraint "daily_usage_stats_user_id_fkey"',
  'statistics belong to an existing user');
SELECT throws_ok(
  $$INSERT INTO keen.daily_usage_stats (user_id) VALUES ('00000000-0000-4000-8000-00000000a11c')$$,
  '23502', NULL,
  'a statistics row has a day');

-- ===== dashboard_metrics =====================================================
SELECT throws_ok(
  $$INSERT INTO keen.dashboard_metrics (hour_bucket) VALUES (now())$$,
  '42809', NULL,
  'the dashboard is a materialized view: rows come only from its refresh');

-- ===== nothing was written by the refused rows ================================
SELECT is((SELECT count(*) FROM keen.daily_usage_stats), 1::bigint,
  'daily_usage_stats holds only the fixture');
SELECT is((SELECT sessions_started FROM keen.daily_usage_stats), 1,
  'the fixture row is unchanged');

SELECT * FROM finish();
ROLLBACK;
