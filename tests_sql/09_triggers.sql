-- Triggers: every table's exact trigger list and the function each trigger runs, so a
-- trigger cannot appear, vanish or change function unnoticed; and the time-zone check.
BEGIN;
SELECT plan(30);

-- ===== structure: trigger lists =============================================
SELECT triggers_are('keen', 'agent_sessions', ARRAY['_010_check_update', '_100_set_updated_at'], 'keen.agent_sessions has exactly its triggers (none touches a table: on Citus they run on the shard)');
SELECT triggers_are('keen', 'auth_tokens', ARRAY['_050_guard', '_100_set_updated_at'], 'keen.auth_tokens has exactly its triggers');
SELECT triggers_are('keen', 'credit_accounts', ARRAY[]::name[], 'keen.credit_accounts has no trigger (the movements write it; keen_app cannot)');
SELECT triggers_are('keen', 'credit_holds', ARRAY[]::name[], 'keen.credit_holds has no trigger (the movements write it; keen_app cannot)');
SELECT triggers_are('keen', 'credit_transactions', ARRAY['_010_append_only', '_010_append_only_truncate'], 'keen.credit_transactions has exactly its append-only triggers');
SELECT triggers_are('keen', 'session_events', ARRAY[]::name[], 'keen.session_events has no trigger (keen.append_session_event numbers, checks and announces)');
SELECT triggers_are('keen', 'users', ARRAY['_100_set_updated_at'], 'keen.users has exactly its triggers (0016: the audit and the time zone rebucketing are in the writer functions)');
SELECT triggers_are('keen', 'user_audit_log', ARRAY['_010_append_only', '_010_append_only_truncate'], 'keen.user_audit_log has exactly its triggers');
SELECT triggers_are('keen', 'websocket_connections', ARRAY['_100_set_updated_at'], 'keen.websocket_connections has exactly its triggers');
SELECT triggers_are('keen', 'session_usage_queue', ARRAY['_500_flush'], 'keen.session_usage_queue has exactly its deferred flush');
SELECT triggers_are('keen', 'daily_usage_stats', ARRAY[]::name[], 'keen.daily_usage_stats has no trigger');
SELECT triggers_are('keen', 'recharge_requests', ARRAY[]::name[], 'keen.recharge_requests has no trigger');
SELECT triggers_are('keen', 'session_limits', ARRAY[]::name[], 'keen.session_limits has no trigger');

-- ===== structure: the function each trigger runs ============================
SELECT trigger_is('keen', 'agent_sessions', '_010_check_update', 'keen', 'tg_agent_sessions__check_update', 'agent_sessions._010_check_update runs keen.tg_agent_sessions__check_update');
SELECT trigger_is('keen', 'agent_sessions', '_100_set_updated_at', 'keen', 'tg_set_updated_at', 'agent_sessions._100_set_updated_at runs keen.tg_set_updated_at');
SELECT trigger_is('keen', 'auth_tokens', '_050_guard', 'keen', 'tg_auth_tokens__guard', 'auth_tokens._050_guard runs keen.tg_auth_tokens__guard');
SELECT trigger_is('keen', 'auth_tokens', '_100_set_updated_at', 'keen', 'tg_set_updated_at', 'auth_tokens._100_set_updated_at runs keen.tg_set_updated_at');
SELECT trigger_is('keen', 'credit_transactions', '_010_append_only', 'keen', 'tg_credit_transactions__append_only', 'credit_transactions._010_append_only runs keen.tg_credit_transactions__append_only');
SELECT trigger_is('keen', 'credit_transactions', '_010_append_only_truncate', 'keen', 'tg_credit_transactions__append_only', 'credit_transactions._010_append_only_truncate runs keen.tg_credit_transactions__append_only');
SELECT trigger_is('keen', 'users', '_100_set_updated_at', 'keen', 'tg_set_updated_at', 'users._100_set_updated_at runs keen.tg_set_updated_at');
SELECT hasnt_function('keen', 'tg_users__audit', '{}'::name[], 'no audit trigger function on users: keen.append_user_audit, called by each writer (0016)');
SELECT trigger_is('keen', 'session_usage_queue', '_500_flush', 'keen', 'tg_session_usage_queue__flush', 'session_usage_queue._500_flush runs keen.tg_session_usage_queue__flush');
SELECT trigger_is('keen', 'websocket_connections', '_100_set_updated_at', 'keen', 'tg_set_updated_at', 'websocket_connections._100_set_updated_at runs keen.tg_set_updated_at');

-- ===== keen.is_time_zone ====================================================
SELECT ok(keen.is_time_zone('UTC'), 'UTC is a time zone');
SELECT ok(keen.is_time_zone('Europe/Berlin'), 'an IANA Area/Location name is a time zone');
SELECT ok(keen.is_time_zone('America/Argentina/Buenos_Aires'), 'a three-part IANA name is a time zone');
SELECT ok(keen.is_time_zone('Japan'), 'an IANA name without a slash is a time zone');
SELECT ok(NOT keen.is_time_zone('Mars/Olympus_Mons'), 'an unknown Area/Location is not a time zone');
SELECT ok(NOT keen.is_time_zone('UTC+5'), 'a POSIX offset is not accepted as a time zone');
SELECT ok(NOT coalesce(keen.is_time_zone(NULL), false), 'NULL is not a time zone');

SELECT * FROM finish();
ROLLBACK;
