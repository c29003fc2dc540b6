-- Structure: daily usage statistics and the dashboard materialized view.
-- Every column (type, nullability, default), key, foreign key, CHECK constraint and index;
-- the rules behind the constraints are exercised in 05-08_*_rules.sql.
BEGIN;
SELECT plan(74);

-- ===== keen.daily_usage_stats =====================================================
SELECT has_table('keen', 'daily_usage_stats', 'keen.daily_usage_stats exists');
SELECT table_owner_is('keen', 'daily_usage_stats', 'keen_owner', 'keen_owner owns keen.daily_usage_stats');
SELECT columns_are('keen', 'daily_usage_stats', ARRAY[
    'user_id', 'date_bucket', 'sessions_started', 'sessions_completed', 'sessions_failed',
    'sessions_cancelled', 'tokens_used', 'tool_calls', 'total_cost', 'credits_purchased',
    'credits_spent', 'credits_refunded', 'credits_adjusted', 'updated_at'],
  'keen.daily_usage_stats has exactly the expected columns');
SELECT col_type_is('keen', 'daily_usage_stats', 'user_id', 'uuid', 'daily_usage_stats.user_id is uuid');
SELECT col_not_null('keen', 'daily_usage_stats', 'user_id', 'daily_usage_stats.user_id is NOT NULL');
SELECT col_hasnt_default('keen', 'daily_usage_stats', 'user_id', 'daily_usage_stats.user_id has no default');
SELECT col_type_is('keen', 'daily_usage_stats', 'date_bucket', 'date', 'daily_usage_stats.date_bucket is date');
SELECT col_not_null('keen', 'daily_usage_stats', 'date_bucket', 'daily_usage_stats.date_bucket is NOT NULL');
SELECT col_hasnt_default('keen', 'daily_usage_stats', 'date_bucket', 'daily_usage_stats.date_bucket has no default');
SELECT col_type_is('keen', 'daily_usage_stats', 'sessions_started', 'integer', 'daily_usage_stats.sessions_started is integer');
SELECT col_not_null('keen', 'daily_usage_stats', 'sessions_started', 'daily_usage_stats.sessions_started is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'sessions_started', '0', 'daily_usage_stats.sessions_started defaults to 0');
SELECT col_type_is('keen', 'daily_usage_stats', 'sessions_completed', 'integer', 'daily_usage_stats.sessions_completed is integer');
SELECT col_not_null('keen', 'daily_usage_stats', 'sessions_completed', 'daily_usage_stats.sessions_completed is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'sessions_completed', '0', 'daily_usage_stats.sessions_completed defaults to 0');
SELECT col_type_is('keen', 'daily_usage_stats', 'sessions_failed', 'integer', 'daily_usage_stats.sessions_failed is integer');
SELECT col_not_null('keen', 'daily_usage_stats', 'sessions_failed', 'daily_usage_stats.sessions_failed is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'sessions_failed', '0', 'daily_usage_stats.sessions_failed defaults to 0');
SELECT col_type_is('keen', 'daily_usage_stats', 'sessions_cancelled', 'integer', 'daily_usage_stats.sessions_cancelled is integer');
SELECT col_not_null('keen', 'daily_usage_stats', 'sessions_cancelled', 'daily_usage_stats.sessions_cancelled is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'sessions_cancelled', '0', 'daily_usage_stats.sessions_cancelled defaults to 0');
SELECT col_type_is('keen', 'daily_usage_stats', 'tokens_used', 'bigint', 'daily_usage_stats.tokens_used is bigint');
SELECT col_not_null('keen', 'daily_usage_stats', 'tokens_used', 'daily_usage_stats.tokens_used is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'tokens_used', '0', 'daily_usage_stats.tokens_used defaults to 0');
SELECT col_type_is('keen', 'daily_usage_stats', 'tool_calls', 'bigint', 'daily_usage_stats.tool_calls is bigint');
SELECT col_not_null('keen', 'daily_usage_stats', 'tool_calls', 'daily_usage_stats.tool_calls is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'tool_calls', '0', 'daily_usage_stats.tool_calls defaults to 0');
SELECT col_type_is('keen', 'daily_usage_stats', 'total_cost', 'numeric(16,6)', 'daily_usage_stats.total_cost is numeric(16,6)');
SELECT col_not_null('keen', 'daily_usage_stats', 'total_cost', 'daily_usage_stats.total_cost is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'total_cost', '0', 'daily_usage_stats.total_cost defaults to 0');
SELECT col_type_is('keen', 'daily_usage_stats', 'credits_purchased', 'numeric(16,4)', 'daily_usage_stats.credits_purchased is numeric(16,4)');
SELECT col_not_null('keen', 'daily_usage_stats', 'credits_purchased', 'daily_usage_stats.credits_purchased is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'credits_purchased', '0', 'daily_usage_stats.credits_purchased defaults to 0');
SELECT col_type_is('keen', 'daily_usage_stats', 'credits_spent', 'numeric(16,4)', 'daily_usage_stats.credits_spent is numeric(16,4)');
SELECT col_not_null('keen', 'daily_usage_stats', 'credits_spent', 'daily_usage_stats.credits_spent is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'credits_spent', '0', 'daily_usage_stats.credits_spent defaults to 0');
SELECT col_type_is('keen', 'daily_usage_stats', 'credits_refunded', 'numeric(16,4)', 'daily_usage_stats.credits_refunded is numeric(16,4)');
SELECT col_not_null('keen', 'daily_usage_stats', 'credits_refunded', 'daily_usage_stats.credits_refunded is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'credits_refunded', '0', 'daily_usage_stats.credits_refunded defaults to 0');
SELECT col_type_is('keen', 'daily_usage_stats', 'credits_adjusted', 'numeric(16,4)', 'daily_usage_stats.credits_adjusted is numeric(16,4)');
SELECT col_not_null('keen', 'daily_usage_stats', 'credits_adjusted', 'daily_usage_stats.credits_adjusted is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'credits_adjusted', '0', 'daily_usage_stats.credits_adjusted defaults to 0');
SELECT col_type_is('keen', 'daily_usage_stats', 'updated_at', 'timestamp with time zone', 'daily_usage_stats.updated_at is timestamp with time zone');
SELECT col_not_null('keen', 'daily_usage_stats', 'updated_at', 'daily_usage_stats.updated_at is NOT NULL');
SELECT col_default_is('keen', 'daily_usage_stats', 'updated_at', 'now()', 'daily_usage_stats.updated_at defaults to now()');
-- keys
SELECT has_pk('keen', 'daily_usage_stats', 'keen.daily_usage_stats has a primary key');
SELECT col_is_pk('keen', 'daily_usage_stats', ARRAY['user_id', 'date_bucket'], 'daily_usage_stats_pkey: PRIMARY KEY (user_id, date_bucket)');
-- foreign keys (the composite ones carry user_id: no cross-tenant reference)
SELECT fk_ok('keen', 'daily_usage_stats', ARRAY['user_id'], 'keen', 'users', ARRAY['id'],
  'daily_usage_stats_user_id_fkey: (user_id) references keen.users (id)');
SELECT set_eq(
  $$SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'keen.daily_usage_stats'::regclass AND contype = 'f'$$,
  $$VALUES
    ('daily_usage_stats_user_id_fkey', 'FOREIGN KEY (user_id) REFERENCES keen.users(id) ON DELETE CASCADE')$$,
  'keen.daily_usage_stats has exactly its foreign keys, with their ON DELETE actions');
-- check constraints
SELECT has_check('keen', 'daily_usage_stats', 'keen.daily_usage_stats has CHECK constraints');
SELECT set_eq(
  $$SELECT conname::text FROM pg_constraint WHERE conrelid = 'keen.daily_usage_stats'::regclass AND contype = 'c'$$,
  ARRAY['daily_usage_stats_counts_check'],
  'keen.daily_usage_stats has exactly its named CHECK constraints');
SELECT is(
  (SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'daily_usage_stats_counts_check'),
  'CHECK (keen.daily_usage_stats_counts_ok(sessions_started, sessions_completed, sessions_failed, sessions_cancelled, tokens_used, tool_calls, total_cost, credits_purchased, credits_spent, credits_refunded))',
  'daily_usage_stats_counts_check calls keen.daily_usage_stats_counts_ok (migration 0021)');
-- indexes
SELECT indexes_are('keen', 'daily_usage_stats', ARRAY['daily_usage_stats_pkey'],
  'keen.daily_usage_stats has exactly the expected indexes');
-- Room on each page: the update of a day's row stays on its page (HOT, migration 0020).
SELECT is((SELECT reloptions FROM pg_class WHERE oid = 'keen.daily_usage_stats'::regclass),
  ARRAY['fillfactor=50'], 'keen.daily_usage_stats has fillfactor 50');

-- ===== keen.dashboard_metrics =====================================================
SELECT has_materialized_view('keen', 'dashboard_metrics', 'keen.dashboard_metrics exists');
SELECT materialized_view_owner_is('keen', 'dashboard_metrics', 'keen_owner', 'keen_owner owns keen.dashboard_metrics');
SELECT columns_are('keen', 'dashboard_metrics', ARRAY[
    'hour_bucket', 'sessions_started', 'sessions_completed', 'sessions_failed',
    'sessions_cancelled', 'active_users', 'avg_cost', 'total_cost', 'tokens_used',
    'credits_sold', 'credits_spent', 'credits_refunded', 'p50_duration_seconds',
    'p95_duration_seconds', 'refreshed_at'],
  'keen.dashboard_metrics has exactly the expected columns');
SELECT col_type_is('keen', 'dashboard_metrics', 'hour_bucket', 'timestamp with time zone', 'dashboard_metrics.hour_bucket is timestamp with time zone');
SELECT col_type_is('keen', 'dashboard_metrics', 'sessions_started', 'bigint', 'dashboard_metrics.sessions_started is bigint');
SELECT col_type_is('keen', 'dashboard_metrics', 'sessions_completed', 'bigint', 'dashboard_metrics.sessions_completed is bigint');
SELECT col_type_is('keen', 'dashboard_metrics', 'sessions_failed', 'bigint', 'dashboard_metrics.sessions_failed is bigint');
SELECT col_type_is('keen', 'dashboard_metrics', 'sessions_cancelled', 'bigint', 'dashboard_metrics.sessions_cancelled is bigint');
SELECT col_type_is('keen', 'dashboard_metrics', 'active_users', 'bigint', 'dashboard_metrics.active_users is bigint');
SELECT col_type_is('keen', 'dashboard_metrics', 'avg_cost', 'numeric', 'dashboard_metrics.avg_cost is numeric');
SELECT col_type_is('keen', 'dashboard_metrics', 'total_cost', 'numeric', 'dashboard_metrics.total_cost is numeric');
SELECT col_type_is('keen', 'dashboard_metrics', 'tokens_used', 'numeric', 'dashboard_metrics.tokens_used is numeric');
SELECT col_type_is('keen', 'dashboard_metrics', 'credits_sold', 'numeric', 'dashboard_metrics.credits_sold is numeric');
SELECT col_type_is('keen', 'dashboard_metrics', 'credits_spent', 'numeric', 'dashboard_metrics.credits_spent is numeric');
SELECT col_type_is('keen', 'dashboard_metrics', 'credits_refunded', 'numeric', 'dashboard_metrics.credits_refunded is numeric');
SELECT col_type_is('keen', 'dashboard_metrics', 'p50_duration_seconds', 'double precision', 'dashboard_metrics.p50_duration_seconds is double precision');
SELECT col_type_is('keen', 'dashboard_metrics', 'p95_duration_seconds', 'double precision', 'dashboard_metrics.p95_duration_seconds is double precision');
SELECT col_type_is('keen', 'dashboard_metrics', 'refreshed_at', 'timestamp with time zone', 'dashboard_metrics.refreshed_at is timestamp with time zone');
-- indexes
SELECT indexes_are('keen', 'dashboard_metrics', ARRAY['dashboard_metrics_hour_bucket_key'],
  'keen.dashboard_metrics has exactly the expected indexes');
SELECT is((SELECT pg_get_indexdef('keen.dashboard_metrics_hour_bucket_key'::regclass)),
  'CREATE UNIQUE INDEX dashboard_metrics_hour_bucket_key ON keen.dashboard_metrics USING btree (hour_bucket)',
  'dashboard_metrics_hour_bucket_key: its columns, order, uniqueness and predicate');

SELECT * FROM finish();
ROLLBACK;
