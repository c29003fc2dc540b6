-- Analytics: daily usage stats kept by triggers, usage_report, session_cost_breakdown,
-- verify/rebuild, and the dashboard materialized view (refresh, figures, who may read it).
BEGIN;
SELECT plan(98);

-- pgTAP itself must be callable while acting as keen_app / keen_analytics (rolled back).
GRANT USAGE ON SCHEMA tap TO keen_app, keen_analytics;

-- ===== structure =============================================================
SELECT has_table('keen', 'daily_usage_stats', 'daily_usage_stats exists');
SELECT columns_are('keen', 'daily_usage_stats', ARRAY[
  'user_id', 'date_bucket', 'sessions_started', 'sessions_completed', 'sessions_failed',
  'sessions_cancelled', 'tokens_used', 'tool_calls', 'total_cost', 'credits_purchased',
  'credits_spent', 'credits_refunded', 'credits_adjusted', 'updated_at'],
  'daily_usage_stats has the contract''s columns plus cancelled, refunded, adjusted');
SELECT has_materialized_view('keen', 'dashboard_metrics', 'dashboard_metrics is a materialized view');
SELECT index_is_unique('keen', 'dashboard_metrics', 'dashboard_metrics_hour_bucket_key',
  'dashboard_metrics has the unique index REFRESH CONCURRENTLY needs');
SELECT policies_are('keen', 'daily_usage_stats', ARRAY['select_own', 'owner_all'],
  'daily_usage_stats has the tenant read policy and the owner policy (keen_app writes no stats)');
SELECT is_definer('keen', 'refresh_dashboard_metrics', '{}'::name[],
  'refresh_dashboard_metrics is SECURITY DEFINER (the view reads every tenant)');
SELECT is_definer('keen', 'usage_report', ARRAY['date', 'date'], 'usage_report runs as keen_owner for the context''s tenant by value (0019: one connection user per transaction on Citus)');
SELECT is_definer('keen', 'session_cost_breakdown', ARRAY['text'], 'session_cost_breakdown runs as keen_owner for the context''s tenant by value (0019)');
SELECT isnt_definer('keen', 'verify_usage_stats', '{}'::name[], 'verify_usage_stats runs as the operator');
SELECT is_definer('keen', 'tg_session_usage_queue__flush', '{}'::name[],
  'the deferred session stats flush is SECURITY DEFINER (at commit it runs as keen_app, which writes no stats)');
SELECT hasnt_function('keen', 'tg_credit_transactions__track_usage', '{}'::name[], 'no ledger stats trigger: each credit movement adds its own figure (keen.add_ledger_usage)');
SELECT isnt_definer('keen', 'add_usage_deltas', ARRAY['keen.usage_delta[]'], 'add_usage_deltas runs as the invoker, under RLS');
SELECT hasnt_function('keen', 'tg_users__rebucket_usage_stats', '{}'::name[], 'no time zone trigger: update_profile rebuilds the stats itself (0016)');
SELECT function_privs_are('keen', 'usage_report', ARRAY['date', 'date'], 'keen_app', ARRAY['EXECUTE'],
  'keen_app may run usage_report');
SELECT function_privs_are('keen', 'session_cost_breakdown', ARRAY['text'], 'keen_app', ARRAY['EXECUTE'],
  'keen_app may run session_cost_breakdown');
SELECT function_privs_are('keen', 'verify_usage_stats', '{}'::name[], 'keen_app', '{}'::text[],
  'verify_usage_stats is not granted to keen_app');
SELECT function_privs_are('keen', 'rebuild_usage_stats', ARRAY['uuid'], 'keen_app', '{}'::text[],
  'rebuild_usage_stats is not granted to keen_app');
SELECT function_privs_are('keen', 'refresh_dashboard_metrics', '{}'::name[], 'keen_app', '{}'::text[],
  'refresh_dashboard_metrics is not granted to keen_app');
SELECT function_privs_are('keen', 'refresh_dashboard_metrics', '{}'::name[], 'keen_analytics', ARRAY['EXECUTE'],
  'keen_analytics may refresh the dashboard (the scheduled job''s login)');
SELECT table_privs_are('keen', 'dashboard_metrics', 'keen_app', '{}'::text[], 'keen_app has no access to dashboard_metrics');
SELECT table_privs_are('keen', 'dashboard_metrics', 'keen_analytics', ARRAY['SELECT'], 'keen_analytics may only read dashboard_metrics');
SELECT table_privs_are('keen', 'daily_usage_stats', 'keen_app', ARRAY['SELECT'],
  'keen_app only reads stats (the triggers write them as keen_owner)');
SELECT has_trigger('keen', 'session_usage_queue', '_500_flush', 'queued session changes update the stats at commit');
SELECT hasnt_trigger('keen', 'agent_sessions', '_500_track_usage_stats', 'no stats trigger on sessions: the session functions queue their changes (a trigger would run on the worker on Citus)');
SELECT hasnt_trigger('keen', 'credit_transactions', '_500_track_usage_stats', 'ledger rows are counted by the movements, not by a trigger');
SELECT hasnt_trigger('keen', 'users', '_500_rebucket_usage_stats', 'a time zone change re-buckets the stats in update_profile, not in a trigger on users');

-- ===== fixtures (as the owner) ===============================================
-- alice lives in Paris (UTC+1 in November), bob in New York (UTC-5).
DO $$ BEGIN
  PERFORM set_config('test.a', keen.register_user(
    p_email => 'alice@example.com', p_username => 'alice', p_password_hash => repeat('a', 40),
    p_timezone => 'Europe/Paris')::text, true);
  PERFORM set_config('test.b', keen.register_user(
    p_email => 'bob@example.com', p_username => 'bob', p_password_hash => repeat('b', 40),
    p_timezone => 'America/New_York')::text, true);
END $$;
CREATE FUNCTION tap.day_of(p_user text, p_day date) RETURNS keen.daily_usage_stats
  LANGUAGE sql STABLE AS $$
    SELECT s.* FROM keen.daily_usage_stats AS s
    WHERE s.user_id = current_setting('test.' || p_user)::uuid AND s.date_bucket = p_day $$;
GRANT EXECUTE ON FUNCTION tap.day_of(text, date) TO keen_app, keen_owner;
GRANT USAGE ON SCHEMA tap TO keen_owner;
-- The session functions queue each change of a session for the stats
-- (keen.track_session_usage, added at commit). This script writes history with chosen times
-- directly, so a trigger of its own (rolled back with it) queues those writes the same way
-- while test.direct_writes is on (off around the session functions, which queue their own).
CREATE FUNCTION tap.queue_session_change() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF current_setting('test.direct_writes', true) = 'on' THEN
    PERFORM keen.track_session_usage(CASE WHEN TG_OP = 'UPDATE' THEN OLD END, NEW);
  END IF;
  RETURN NULL;
END $$;
SELECT set_config('test.direct_writes', 'on', true);
CREATE TRIGGER _900_test_queue AFTER INSERT OR UPDATE ON keen.agent_sessions
  FOR EACH ROW EXECUTE FUNCTION tap.queue_session_change();

-- ===== as the owner: alice's scripted day (2020-11-10, Paris) ================
-- History with chosen times is written as keen_owner (keen_app writes no session and sets
-- no time); the figures then arrive through the same triggers.
SET LOCAL ROLE keen_owner;
SELECT set_config('app.current_user_id', current_setting('test.a'), true);
-- a1 (09:00–10:00 Paris) completes; its child a2 fails; a3 runs across Paris midnight;
-- a4 starts after Paris midnight (still 2020-11-10 in UTC) and is cancelled.
INSERT INTO keen.agent_sessions (id, user_id, session_id, git_branch, vision, working_directory, start_time)
VALUES ('00000000-0000-4000-8000-0000000000a1', current_setting('test.a')::uuid, 'a1', 'main', 'v', '/w',
        '2020-11-10 08:00Z');
SELECT is(tap.day_of('a', '2020-11-10'), NULL,
  'session figures are added at commit (deferred trigger), not at the insert');
SET CONSTRAINTS keen._500_flush IMMEDIATE;
SELECT is((tap.day_of('a', '2020-11-10')).sessions_started, 1,
  'the deferred figures arrive when the constraint trigger fires (commit, or SET CONSTRAINTS IMMEDIATE)');
INSERT INTO keen.agent_sessions (id, user_id, session_id, parent_session_id, session_depth, git_branch, vision,
                                 working_directory, start_time)
VALUES ('00000000-0000-4000-8000-0000000000a2', current_setting('test.a')::uuid, 'a2',
        '00000000-0000-4000-8000-0000000000a1', 1, 'main', 'v', '/w', '2020-11-10 08:10Z');
INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, start_time)
VALUES (current_setting('test.a')::uuid, 'a3', 'main', 'v', '/w', '2020-11-10 22:30Z'),
       (current_setting('test.a')::uuid, 'a4', 'main', 'v', '/w', '2020-11-10 23:15Z');
-- Progress reports are increments, several per session.
UPDATE keen.agent_sessions SET tokens_used = tokens_used + 600, tool_calls_count = tool_calls_count + 3,
       total_cost = total_cost + 0.75 WHERE session_id = 'a1';
UPDATE keen.agent_sessions SET tokens_used = tokens_used + 400, tool_calls_count = tool_calls_count + 2,
       total_cost = total_cost + 0.5 WHERE session_id = 'a1';
UPDATE keen.agent_sessions SET tokens_used = tokens_used + 500, tool_calls_count = tool_calls_count + 2,
       total_cost = total_cost + 0.75 WHERE session_id = 'a2';
UPDATE keen.agent_sessions SET tokens_used = tokens_used + 200, tool_calls_count = tool_calls_count + 1,
       total_cost = total_cost + 0.5 WHERE session_id = 'a3';
UPDATE keen.agent_sessions SET execution_status = 'failed', end_time = '2020-11-10 08:30Z' WHERE session_id = 'a2';
UPDATE keen.agent_sessions SET execution_status = 'completed', end_time = '2020-11-10 09:00Z' WHERE session_id = 'a1';
UPDATE keen.agent_sessions SET execution_status = 'completed', end_time = '2020-11-10 23:30Z' WHERE session_id = 'a3';
UPDATE keen.agent_sessions SET execution_status = 'cancelled', end_time = '2020-11-10 23:20Z' WHERE session_id = 'a4';
-- Credits move today (the ledger stamps server time), through the API as keen_app.
SET LOCAL ROLE keen_app;
SELECT set_config('test.a_today', (now() AT TIME ZONE 'Europe/Paris')::date::text, true);
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 50, p_transaction_type => 'purchase')$$, 'alice buys 50 credits');
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 2, p_session_id => '00000000-0000-4000-8000-0000000000a1')$$,
  'alice is charged 2 for session a1');
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 0.5, p_transaction_type => 'refund')$$, 'alice is refunded 0.5');
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 1, p_transaction_type => 'adjustment')$$, 'alice is adjusted by 1');

SELECT is((tap.day_of('a', '2020-11-10')).sessions_started, 3,
  'sessions_started counts a1, a2 and a3 on their local start day');
SELECT is((tap.day_of('a', '2020-11-10')).sessions_completed, 1, 'sessions_completed counts a1 on its local end day');
SELECT is((tap.day_of('a', '2020-11-10')).sessions_failed, 1, 'sessions_failed counts a2');
SELECT is((tap.day_of('a', '2020-11-10')).tokens_used, 1700::bigint, 'tokens_used sums the increments of the day''s sessions');
SELECT is((tap.day_of('a', '2020-11-10')).tool_calls, 8::bigint, 'tool_calls sums the increments');
SELECT is((tap.day_of('a', '2020-11-10')).total_cost, 2.5, 'total_cost sums the increments');
SELECT is((tap.day_of('a', '2020-11-11')).sessions_started, 1,
  'a4 started at 00:15 Paris time: it counts on the user''s next day, not the UTC day');
SELECT is((tap.day_of('a', '2020-11-11')).sessions_completed, 1, 'a3 ended after Paris midnight: completed on the next day');
SELECT is((tap.day_of('a', '2020-11-11')).sessions_cancelled, 1, 'sessions_cancelled counts a4');
SELECT is((tap.day_of('a', current_setting('test.a_today')::date)).credits_purchased, 50.0,
  'credits_purchased counts purchases on the local day of the ledger row');
SELECT is((tap.day_of('a', current_setting('test.a_today')::date)).credits_spent, 2.0,
  'credits_spent counts usage rows as positive amounts');
SELECT is((tap.day_of('a', current_setting('test.a_today')::date)).credits_refunded, 0.5,
  'credits_refunded counts refunds apart from spending');
SELECT is((tap.day_of('a', current_setting('test.a_today')::date)).credits_adjusted, 1.0,
  'credits_adjusted nets adjustments');
SELECT results_eq(
  $$SELECT date_bucket, sessions_started, sessions_completed, sessions_failed, sessions_cancelled, tokens_used,
           tool_calls, total_cost FROM keen.usage_report('2020-11-09', '2020-11-12')$$,
  $$VALUES ('2020-11-09'::date, 0, 0, 0, 0, 0::bigint, 0::bigint, 0::numeric),
           ('2020-11-10', 3, 1, 1, 0, 1700, 8, 2.5), ('2020-11-11', 1, 1, 0, 1, 0, 0, 0),
           ('2020-11-12', 0, 0, 0, 0, 0, 0, 0)$$,
  'usage_report lists every day of the range in order, zeros on days without activity');
SELECT results_eq(
  $$SELECT credits_purchased, credits_spent, credits_refunded, credits_adjusted
    FROM keen.usage_report(current_setting('test.a_today')::date, current_setting('test.a_today')::date)$$,
  $$VALUES (50::numeric, 2::numeric, 0.5::numeric, 1::numeric)$$,
  'usage_report carries the day''s credit figures');
-- The same figures through the public session functions (today, in one transaction each
-- here: one test transaction, the deferred trigger set IMMEDIATE above).
SELECT set_config('test.direct_writes', 'off', true);
SELECT lives_ok($$SELECT keen.start_session(p_session_id => 'live', p_vision => 'v', p_working_directory => '/w',
                                            p_git_branch => 'main')$$, 'alice starts a session through start_session');
SELECT lives_ok($$SELECT keen.update_session_progress(p_session_id => 'live', p_tool_calls => 2, p_tokens => 50,
                                                      p_cost => 0.5)$$, 'alice reports progress');
SELECT lives_ok($$SELECT keen.complete_session(p_session_id => 'live', p_success => true, p_total_cost => 1.25)$$,
  'alice completes it at a cost of 1.25, charged in the same transaction');
SELECT results_eq(
  $$SELECT sessions_started, sessions_completed, tokens_used, tool_calls, total_cost, credits_spent
    FROM keen.usage_report(current_setting('test.a_today')::date, current_setting('test.a_today')::date)$$,
  $$VALUES (1, 1, 50::bigint, 2::bigint, 1.25::numeric, 3.25::numeric)$$,
  'start_session, update_session_progress and complete_session keep the day''s figures, charge included');
SELECT results_eq(
  $$SELECT session_id, depth, path, execution_status, own_cost, tree_cost, own_tokens, tree_tokens, descendants,
           own_charged, tree_charged FROM keen.session_cost_breakdown('a1')$$,
  $$VALUES ('a1', 0, ARRAY['a1'], 'completed', 1.25, 2.0, 1000::bigint, 1500::bigint, 1, 2.0, 2.0),
           ('a2', 1, ARRAY['a1', 'a2'], 'failed', 0.75, 0.75, 500::bigint, 500::bigint, 0, 0, 0)$$,
  'session_cost_breakdown: a task costs its session plus all descendants; charges come from the ledger');
SELECT is((SELECT count(*) FROM keen.daily_usage_stats WHERE user_id <> current_setting('test.a')::uuid), 0::bigint,
  'alice sees only her own stats rows');

-- ===== as another tenant =====================================================
SELECT set_config('app.current_user_id', current_setting('test.b'), true);
-- b1 runs 22:00–23:00 New York time on 2020-11-10 (already 2020-11-11 in UTC): history,
-- written as keen_owner.
SET LOCAL ROLE keen_owner;
SELECT set_config('test.direct_writes', 'on', true);
INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, start_time)
VALUES (current_setting('test.b')::uuid, 'b1', 'main', 'v', '/w', '2020-11-11 03:00Z');
UPDATE keen.agent_sessions SET tokens_used = 300, tool_calls_count = 4, total_cost = 0.3 WHERE session_id = 'b1';
-- Completion may set a final cost below the running total: the decrement is taken back.
UPDATE keen.agent_sessions SET execution_status = 'completed', end_time = '2020-11-11 04:00Z', total_cost = 0.25
WHERE session_id = 'b1';
SET LOCAL ROLE keen_app;
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 20)$$, 'bob buys 20 credits');
SELECT results_eq(
  $$SELECT date_bucket, sessions_started, sessions_completed, tokens_used, total_cost
    FROM keen.usage_report('2020-11-10', '2020-11-11')$$,
  $$VALUES ('2020-11-10'::date, 1, 1, 300::bigint, 0.25::numeric), ('2020-11-11', 0, 0, 0, 0)$$,
  'bob''s report holds only his session, on his New York day, with its final (lower) cost; none of alice''s figures');
SELECT is((SELECT credits_purchased FROM keen.usage_report((now() AT TIME ZONE 'America/New_York')::date,
                                                           (now() AT TIME ZONE 'America/New_York')::date)),
  20::numeric, 'bob''s credits_purchased is his 20, not alice''s 50 of the same day');
SELECT is((SELECT count(*) FROM keen.daily_usage_stats WHERE user_id = current_setting('test.a')::uuid), 0::bigint,
  'bob cannot read alice''s stats rows');
SELECT throws_ok($$SELECT * FROM keen.session_cost_breakdown('a1')$$, 'KE006', NULL,
  'another tenant''s session tree is not found (KE006)');
SELECT throws_ok(
  $$INSERT INTO keen.daily_usage_stats (user_id, date_bucket, sessions_started)
    VALUES (current_setting('test.a')::uuid, '2020-01-01', 99)$$, '42501', NULL,
  'bob cannot write stats rows for alice (RLS)');
SELECT throws_ok($$SELECT * FROM keen.usage_report('2020-11-12', '2020-11-10')$$, 'KE013', NULL,
  'a range that ends before it starts raises KE013');
SELECT throws_ok($$SELECT * FROM keen.usage_report('2020-01-01', '2021-01-01')$$, 'KE013', NULL,
  'a range of more than 366 days raises KE013');
SELECT throws_ok($$SELECT * FROM keen.usage_report(NULL, '2021-01-01')$$, 'KE013', NULL,
  'a missing bound raises KE013');
SELECT lives_ok($$SELECT * FROM keen.usage_report('2020-01-01', '2020-12-31')$$, 'a leap year (366 days) is allowed');
SELECT throws_ok($$SELECT * FROM keen.dashboard_metrics$$, '42501', NULL, 'keen_app cannot read dashboard_metrics');
SELECT throws_ok($$SELECT keen.refresh_dashboard_metrics()$$, '42501', NULL, 'keen_app cannot refresh the dashboard');
SELECT throws_ok($$SELECT * FROM keen.verify_usage_stats()$$, '42501', NULL, 'keen_app cannot run verify_usage_stats');

-- ===== without tenant context ================================================
SELECT set_config('app.current_user_id', '', true);
SELECT throws_ok($$SELECT * FROM keen.usage_report('2020-11-10', '2020-11-11')$$, 'KE010', NULL,
  'usage_report without tenant context raises KE010');
SELECT throws_ok($$SELECT * FROM keen.session_cost_breakdown('a1')$$, 'KE010', NULL,
  'session_cost_breakdown without tenant context raises KE010');
SELECT is((SELECT count(*) FROM keen.daily_usage_stats), 0::bigint, 'without tenant context no stats row is visible');
RESET ROLE;

-- ===== operators: verify and rebuild =========================================
SELECT is_empty($$SELECT * FROM keen.verify_usage_stats()$$, 'verify_usage_stats is empty after the scripted day');
SELECT results_eq(
  $$SELECT date_bucket, sessions_started, tokens_used FROM keen.recompute_usage_stats(current_setting('test.a')::uuid)
    WHERE date_bucket < '2021-01-01' ORDER BY date_bucket$$,
  $$VALUES ('2020-11-10'::date, 3::bigint, 1700::bigint), ('2020-11-11', 1, 0)$$,
  'recompute_usage_stats derives one user''s days from sessions and the ledger');
SELECT results_eq(
  $$SELECT date_bucket, sessions_started, sessions_completed FROM unnest(keen.session_usage(
      (SELECT s FROM keen.agent_sessions AS s WHERE s.session_id = 'a3'), 'Europe/Paris', -1))$$,
  $$VALUES ('2020-11-10'::date, -1::bigint, 0::bigint), ('2020-11-11', 0, -1)$$,
  'session_usage puts the start on the local start day and the outcome on the local end day, signed');
SELECT results_eq(
  $$SELECT credits_spent FROM unnest(keen.ledger_usage(
      (SELECT t FROM keen.credit_transactions AS t
       WHERE t.transaction_type = 'usage' AND t.session_id = '00000000-0000-4000-8000-0000000000a1'), 'UTC'))$$,
  $$VALUES (2::numeric)$$, 'ledger_usage counts a usage row as positive spending');
UPDATE keen.daily_usage_stats SET tokens_used = tokens_used + 7
WHERE user_id = current_setting('test.a')::uuid AND date_bucket = '2020-11-10';
INSERT INTO keen.daily_usage_stats (user_id, date_bucket, sessions_failed)
VALUES (current_setting('test.a')::uuid, '2019-01-01', 5);
SELECT results_eq(
  $$SELECT user_id, date_bucket, figure, recorded, expected FROM keen.verify_usage_stats()$$,
  $$VALUES (current_setting('test.a')::uuid, '2019-01-01'::date, 'sessions_failed', 5::numeric, 0::numeric),
           (current_setting('test.a')::uuid, '2020-11-10'::date, 'tokens_used', 1707::numeric, 1700::numeric)$$,
  'verify_usage_stats reports a tampered figure and a day without activity, recorded against expected');
SELECT is(keen.rebuild_usage_stats(current_setting('test.a')::uuid), 2::bigint,
  'rebuild_usage_stats rewrites the wrong row and zeros the day without activity, nothing else');
SELECT is_empty($$SELECT * FROM keen.verify_usage_stats()$$, 'verify_usage_stats is empty after the rebuild');
SET LOCAL ROLE keen_app;
SELECT set_config('app.current_user_id', current_setting('test.b'), true);
SELECT lives_ok($$SELECT keen.update_profile(p_timezone => 'UTC')$$, 'the user moves to another time zone');
SELECT set_config('app.current_user_id', '', true);
RESET ROLE;
SELECT results_eq(
  $$SELECT date_bucket, sessions_started, sessions_completed FROM keen.daily_usage_stats
    WHERE user_id = current_setting('test.b')::uuid AND sessions_started + sessions_completed > 0$$,
  $$VALUES ('2020-11-11'::date, 1, 1)$$,
  'a new time zone moves the user''s history to the new day boundaries');
SELECT is_empty($$SELECT * FROM keen.verify_usage_stats()$$, 'verify_usage_stats is empty after the time zone change');
DO $$ BEGIN
  PERFORM set_config('test.c', keen.register_user(
    p_email => 'carol@example.com', p_username => 'carol', p_password_hash => repeat('c', 40))::text, true);
END $$;
INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory)
VALUES (current_setting('test.c')::uuid, 'c1', 'main', 'v', '/w');
SELECT lives_ok($$DELETE FROM keen.users WHERE id = current_setting('test.c')::uuid$$,
  'a user with sessions can still be deleted: the cascaded session deletes leave the stats alone');
SELECT is((SELECT count(*) FROM keen.daily_usage_stats WHERE user_id = current_setting('test.c')::uuid), 0::bigint,
  'the deleted user''s stats went with the user');

-- ===== dashboard =============================================================
-- In the hour three hours ago alice completes two sessions (10 and 20 minutes) and one
-- fails (30 minutes); bob has a session running for 30 hours and one cancelled.
SELECT set_config('test.h', (date_trunc('hour', now(), 'UTC') - interval '3 hours')::text, true);
INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, start_time, end_time,
                                 execution_status, tokens_used, total_cost)
SELECT current_setting('test.a')::uuid, d.sid, 'main', 'v', '/w',
       current_setting('test.h')::timestamptz + d.started, current_setting('test.h')::timestamptz + d.ended,
       d.status, d.tokens, d.cost
FROM (VALUES ('d1', interval '5 minutes', interval '15 minutes', 'completed', 100, 1.0),
             ('d2', interval '10 minutes', interval '30 minutes', 'completed', 200, 2.0),
             ('d3', interval '20 minutes', interval '50 minutes', 'failed', 50, 0.5)) AS d(sid, started, ended, status, tokens, cost);
INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, start_time, end_time,
                                 execution_status)
VALUES (current_setting('test.b')::uuid, 'd4', 'main', 'v', '/w', now() - interval '30 hours', NULL, 'running'),
       (current_setting('test.b')::uuid, 'd5', 'main', 'v', '/w', current_setting('test.h')::timestamptz + interval '65 minutes',
        current_setting('test.h')::timestamptz + interval '70 minutes', 'cancelled');
REFRESH MATERIALIZED VIEW keen.dashboard_metrics WITH NO DATA;
SET LOCAL ROLE keen_analytics;
SELECT lives_ok($$SELECT keen.refresh_dashboard_metrics()$$,
  'keen_analytics refreshes a never-populated view (plainly: CONCURRENTLY needs data)');
SELECT lives_ok($$SELECT keen.refresh_dashboard_metrics()$$, 'the next refresh runs CONCURRENTLY inside a transaction');
SELECT is((SELECT count(*) FROM keen.dashboard_metrics), 24::bigint, 'keen_analytics reads 24 hourly buckets');
RESET ROLE;
-- The same aggregates computed directly by a superuser: a view refreshed under forced RLS
-- without the owner policy would be all zeros and still "succeed".
SELECT results_eq(
  $$SELECT hour_bucket, sessions_started, sessions_completed, sessions_failed, sessions_cancelled, active_users,
           tokens_used, credits_sold, credits_spent, credits_refunded
    FROM keen.dashboard_metrics ORDER BY hour_bucket$$,
  $$SELECT h,
      (SELECT count(*) FROM keen.agent_sessions s WHERE s.start_time >= h AND s.start_time < h + interval '1 hour'),
      (SELECT count(*) FROM keen.agent_sessions s WHERE s.end_time >= h AND s.end_time < h + interval '1 hour'
         AND s.execution_status = 'completed'),
      (SELECT count(*) FROM keen.agent_sessions s WHERE s.end_time >= h AND s.end_time < h + interval '1 hour'
         AND s.execution_status = 'failed'),
      (SELECT count(*) FROM keen.agent_sessions s WHERE s.end_time >= h AND s.end_time < h + interval '1 hour'
         AND s.execution_status = 'cancelled'),
      (SELECT count(DISTINCT s.user_id) FROM keen.agent_sessions s
        WHERE s.start_time < h + interval '1 hour' AND coalesce(s.end_time, 'infinity') >= h),
      (SELECT coalesce(sum(s.tokens_used), 0) FROM keen.agent_sessions s
        WHERE s.end_time >= h AND s.end_time < h + interval '1 hour'),
      (SELECT coalesce(sum(t.amount), 0) FROM keen.credit_transactions t
        WHERE t.created_at >= h AND t.created_at < h + interval '1 hour' AND t.transaction_type = 'purchase'),
      (SELECT coalesce(-sum(t.amount), 0) FROM keen.credit_transactions t
        WHERE t.created_at >= h AND t.created_at < h + interval '1 hour' AND t.transaction_type = 'usage'),
      (SELECT coalesce(sum(t.amount), 0) FROM keen.credit_transactions t
        WHERE t.created_at >= h AND t.created_at < h + interval '1 hour' AND t.transaction_type = 'refund')
    FROM generate_series(date_trunc('hour', now(), 'UTC') - interval '23 hours', date_trunc('hour', now(), 'UTC'),
                         interval '1 hour') AS h$$,
  'refreshed dashboard figures equal the same aggregates computed directly by a superuser');
SELECT is((SELECT (sum(sessions_started), sum(credits_sold), min(active_users))::text FROM keen.dashboard_metrics),
  '(5,70.0000,1)', 'the refreshed view is not empty: 5 sessions started, 70 credits sold, bob active every hour');
SELECT results_eq(
  $$SELECT sessions_completed, sessions_failed, avg_cost, p50_duration_seconds, p95_duration_seconds
    FROM keen.dashboard_metrics WHERE hour_bucket = current_setting('test.h')::timestamptz$$,
  $$VALUES (2::bigint, 1::bigint, 1.5::numeric, 1200::float8, 1740::float8)$$,
  'an hour''s failures, average cost of completed sessions and p50/p95 durations');
SELECT is_empty($$SELECT * FROM keen.verify_usage_stats()$$, 'verify_usage_stats is still empty with the dashboard sessions');

-- ===== the ledger's day at both ends of the clock ============================
-- UTC+14 and UTC-11 are always on two different calendar dates: at least one differs from the
-- UTC date. Each user's first entry of the day creates the stats row (the general path),
-- the next ones add to it (the one-UPDATE path); both must bucket by the user's own day.
DO $$ BEGIN
  PERFORM set_config('test.k', keen.register_user(
    p_email => 'kiri@example.com', p_username => 'kiri', p_password_hash => repeat('k', 40),
    p_timezone => 'Pacific/Kiritimati')::text, true);
  PERFORM set_config('test.p', keen.register_user(
    p_email => 'pago@example.com', p_username => 'pago', p_password_hash => repeat('p', 40),
    p_timezone => 'Pacific/Pago_Pago')::text, true);
END $$;
SET LOCAL ROLE keen_app;
SELECT set_config('app.current_user_id', current_setting('test.k'), true);
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 10, p_transaction_type => 'purchase')$$,
  'kiri (UTC+14) buys 10 credits: the day''s first entry');
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 1)$$, 'kiri is charged 1');
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 2)$$, 'kiri is charged 2');
SELECT set_config('app.current_user_id', current_setting('test.p'), true);
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 10, p_transaction_type => 'purchase')$$,
  'pago (UTC-11) buys 10 credits: the day''s first entry');
SELECT lives_ok($$SELECT keen.deduct_credits(p_amount => 1)$$, 'pago is charged 1');
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 0.25, p_transaction_type => 'refund')$$, 'pago is refunded 0.25');
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 0.5, p_transaction_type => 'adjustment')$$, 'pago is adjusted by 0.5');
RESET ROLE;
SELECT isnt((now() AT TIME ZONE 'Pacific/Kiritimati')::date, (now() AT TIME ZONE 'Pacific/Pago_Pago')::date,
  'the two users'' local days differ now');
SELECT results_eq(
  $$SELECT date_bucket, credits_purchased, credits_spent, credits_refunded, credits_adjusted
    FROM keen.daily_usage_stats
    WHERE user_id IN (current_setting('test.k')::uuid, current_setting('test.p')::uuid)
    ORDER BY user_id = current_setting('test.p')::uuid$$,
  $$VALUES ((now() AT TIME ZONE 'Pacific/Kiritimati')::date, 10::numeric, 3::numeric, 0::numeric, 0::numeric),
           ((now() AT TIME ZONE 'Pacific/Pago_Pago')::date, 10, 1, 0.25, 0.5)$$,
  'ledger rows count on the user''s local day, the first creating the row and the next adding to it');
SELECT is_empty($$SELECT * FROM keen.verify_usage_stats()$$, 'verify_usage_stats is empty after both users'' entries');

SELECT * FROM finish();
ROLLBACK;
