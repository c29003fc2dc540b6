-- Sessions, events and connections on a distributed database (issue 19): every public
-- function of the area, in tenant context as the service sends it (role by set_config, the
-- tenant by SET LOCAL, which Citus propagates to the workers), and the operator jobs as
-- keen_owner. Run on a Citus coordinator after keen_sql/sql/citus/distribute.sql.
--
-- One transaction, rolled back. Citus refuses a query on a shard that another role modified
-- earlier in the same transaction ("cannot perform query on placements that were modified
-- in this transaction by a different user"): the writers are SECURITY DEFINER (keen_owner),
-- so the fixtures are written as keen_owner and the readers, once something was written,
-- are called as keen_owner too (they name the tenant by value, as keen_app's RLS would).
-- Two tenants, ...0001 and ...0002, whose shards are on different workers with the default
-- 32 shards.
BEGIN;
SELECT plan(66);
-- pgTAP is callable while acting as keen_app / keen_owner (rolled back).
GRANT USAGE ON SCHEMA tap TO keen_app, keen_owner;

SELECT set_config('test.a', '00000000-0000-4000-8000-000000000001', true);
SELECT set_config('test.b', '00000000-0000-4000-8000-000000000002', true);

-- ===== distribution ===========================================================
SELECT results_eq(
  $$SELECT logicalrelid::text, partmethod::text FROM pg_dist_partition
     WHERE logicalrelid IN ('keen.agent_sessions'::regclass, 'keen.session_events'::regclass,
                            'keen.websocket_connections'::regclass)
     ORDER BY 1$$,
  $$VALUES ('keen.agent_sessions', 'h'), ('keen.session_events', 'h'), ('keen.websocket_connections', 'h')$$,
  'the session tables are hash-distributed');
SELECT results_eq(
  $$SELECT column_to_column_name(logicalrelid, partkey)::text FROM pg_dist_partition
     WHERE logicalrelid IN ('keen.agent_sessions'::regclass, 'keen.session_events'::regclass,
                            'keen.websocket_connections'::regclass)$$,
  $$VALUES ('user_id'), ('user_id'), ('user_id')$$,
  'by user_id');
SELECT is((SELECT count(DISTINCT colocationid) FROM pg_dist_partition
            WHERE logicalrelid IN ('keen.users'::regclass, 'keen.agent_sessions'::regclass,
                                   'keen.session_events'::regclass, 'keen.websocket_connections'::regclass,
                                   'keen.daily_usage_stats'::regclass)),
  1::bigint, 'co-located with users and daily_usage_stats');
SELECT ok(NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'keen.session_usage_queue'::regclass),
  'the usage queue stays a coordinator table (its deferred trigger runs on the coordinator)');
SELECT is((SELECT count(*) FROM pg_trigger
            WHERE tgrelid IN ('keen.agent_sessions'::regclass, 'keen.session_events'::regclass,
                              'keen.websocket_connections'::regclass) AND NOT tgisinternal),
  3::bigint, 'the session tables keep only the triggers that touch NEW/OLD (check_update, two updated_at)');

-- ===== fixtures, as keen_owner ================================================
SELECT set_config('role', 'keen_owner', true);
INSERT INTO keen.users (id, email, username, password_hash, timezone) VALUES
  ('00000000-0000-4000-8000-000000000001'::uuid, 'citus-a@example.com', 'citus_a', repeat('a', 40), 'Europe/Paris'),
  ('00000000-0000-4000-8000-000000000002'::uuid, 'citus-b@example.com', 'citus_b', repeat('b', 40), 'UTC');
INSERT INTO keen.credit_accounts (user_id, current_balance, lifetime_purchased) VALUES
  ('00000000-0000-4000-8000-000000000001'::uuid, 0, 0), ('00000000-0000-4000-8000-000000000002'::uuid, 0, 0);
-- A balance without the ledger (add_credits is the credits area's): enough for holds.
UPDATE keen.credit_accounts AS a SET current_balance = 100, lifetime_purchased = 100
 WHERE a.user_id = '00000000-0000-4000-8000-000000000001'::uuid;

-- ===== tenant a, as keen_app: starting, reporting, finishing =====================
SELECT set_config('role', 'keen_app', true);
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-000000000001';
SELECT is((keen.start_session(p_session_id => 'root', p_vision => 'v', p_working_directory => '/w',
                              p_git_branch => 'main')).session_depth, 0, 'start_session starts a root at depth 0');
SELECT is((keen.start_session(p_session_id => 'child', p_vision => 'v', p_working_directory => '/w',
                              p_git_branch => 'main', p_parent_session_id => 'root')).session_depth, 1,
  'start_session sets a child''s depth from its locked parent (no trigger reads the parent)');
SELECT is((keen.start_session(p_session_id => 'grandchild', p_vision => 'v', p_working_directory => '/w',
                              p_git_branch => 'main', p_parent_session_id => 'child')).session_depth, 2,
  'a grandchild is at depth 2');
SELECT is((keen.start_session(p_session_id => 'other', p_vision => 'v', p_working_directory => '/w',
                              p_git_branch => 'main')).execution_status, 'running', 'a second root');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'root', p_vision => 'v', p_working_directory => '/w',
                                            p_git_branch => 'main')$$, 'KE009', NULL, 'a duplicate session id raises KE009');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'x', p_vision => 'v', p_working_directory => '/w',
                                            p_git_branch => 'main', p_parent_session_id => 'nope')$$,
  'KE006', NULL, 'an unknown parent raises KE006');
SELECT is((keen.update_session_progress(p_session_id => 'child', p_phase => 'PLAN', p_iterations => 1,
                                        p_tool_calls => 2, p_tokens => 30, p_cost => 0.5)).total_cost, 0.5,
  'update_session_progress adds a cost (reserving a hold)');
SELECT is((keen.update_session_progress(p_session_id => 'child', p_tokens => 20)).tokens_used, 50::bigint,
  'a second report adds tokens');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'child', p_phase => 'EXPLORE')$$,
  'KE007', NULL, 'a backward phase raises KE007 (the check_update trigger, on the worker)');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 'child', p_cost => 1000)$$,
  'KE001', NULL, 'a cost beyond the balance raises KE001 and writes nothing');
SELECT is((keen.complete_session(p_session_id => 'grandchild', p_success => false, p_total_cost => 0,
                                 p_error_message => 'boom')).execution_status, 'failed',
  'complete_session ends a session as failed');
SELECT is((keen.complete_session(p_session_id => 'child', p_success => true, p_total_cost => 0)).execution_status,
  'completed', 'complete_session completes a session at cost 0 (its hold released)');
SELECT is((keen.complete_session(p_session_id => 'child', p_success => true, p_total_cost => 0)).execution_status,
  'completed', 'completing again with the same arguments is an idempotent retry');
SELECT throws_ok($$SELECT keen.complete_session(p_session_id => 'child', p_success => false)$$,
  'KE007', NULL, 'completing a finished session otherwise raises KE007');

-- Connections follow sessions; their list on the session is kept by the functions.
SELECT is((keen.open_connection(p_connection_id => 'ws-1', p_client_ip => '10.0.0.1', p_session_id => 'root',
                                p_subscribed_events => ARRAY['session.*'], p_session_filters => ARRAY['root', 'child'])).connection_status,
  'active', 'open_connection opens a connection following root');
SELECT is((keen.open_connection(p_connection_id => 'ws-2', p_client_ip => '10.0.0.2', p_client_type => 'cli',
                                p_session_id => 'root')).client_type, 'cli', 'a second connection');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'ws-1', p_client_ip => '10.0.0.1')$$,
  'KE009', NULL, 'a duplicate connection id raises KE009');
SELECT ok((keen.ping_connection('ws-1')).last_ping_at IS NOT NULL, 'ping_connection marks it alive');
SELECT is((keen.close_connection('ws-2')).connection_status, 'closed', 'close_connection closes it');
SELECT is((keen.close_connection('ws-2')).connection_status, 'closed', 'closing again is idempotent');
SELECT throws_ok($$SELECT keen.ping_connection('ws-2')$$, 'KE007', NULL, 'a closed connection is not pinged back');
SELECT throws_ok($$SELECT keen.ping_connection('nope')$$, 'KE006', NULL, 'an unknown connection raises KE006');

SELECT is((keen.cancel_session('root')).execution_status, 'cancelled',
  'cancel_session cancels root and its running descendants');
SELECT is((keen.cancel_session('root')).execution_status, 'cancelled', 'cancelling again is idempotent');
SELECT throws_ok($$SELECT keen.cancel_session('child')$$, 'KE007', NULL, 'a completed session cannot be cancelled');

-- ===== tenant a: the readers (as keen_owner: see the header) =====================
SELECT set_config('role', 'keen_owner', true);
SELECT results_eq(
  $$SELECT session_id, depth, path, execution_status FROM keen.session_tree('root')$$,
  $$VALUES ('root', 0, ARRAY['root'], 'cancelled'), ('child', 1, ARRAY['root', 'child'], 'completed'),
           ('grandchild', 2, ARRAY['root', 'child', 'grandchild'], 'failed')$$,
  'session_tree: the recursive CTE on the tenant''s shard, depth first');
SELECT throws_ok($$SELECT * FROM keen.session_tree('nope')$$, 'KE006', NULL, 'session_tree of an unknown session raises KE006');
SELECT is((keen.get_session('child')).tokens_used, 50::bigint, 'get_session');
SELECT is((keen.get_session_by_id((keen.get_session('other')).id)).session_id, 'other', 'get_session_by_id');
SELECT is(keen.session_uuid('other'), (keen.get_session('other')).id, 'session_uuid');
SELECT throws_ok($$SELECT keen.get_session('nope')$$, 'KE006', NULL, 'get_session of an unknown session raises KE006');
SELECT results_eq(
  $$SELECT session_id FROM keen.list_sessions() ORDER BY session_id$$,
  $$VALUES ('child'), ('grandchild'), ('other'), ('root')$$, 'list_sessions: the tenant''s four sessions');
SELECT results_eq($$SELECT session_id FROM keen.list_sessions(p_status => 'running')$$, $$VALUES ('other')$$,
  'list_sessions by status');
SELECT results_eq(
  $$SELECT (p.s).session_id FROM (SELECT keen.list_sessions(p_limit => 2) AS s) AS p$$,
  $$SELECT s.session_id FROM keen.list_sessions(p_limit => 2) AS s$$, 'list_sessions pages');
SELECT is((keen.get_session('root')).websocket_connections, ARRAY['ws-1'],
  'the session''s connection list: ws-1 open, ws-2 closed (sync_session_connections, no trigger)');

-- Events: ids carry the COORDINATOR's transaction id; this transaction's own events are
-- above the horizon until it ends.
-- (Checks that read a distributed table are results_eq strings: a statement whose only
-- distributed table is on one shard is sent whole to that worker, pgTAP call included.)
SELECT results_eq($$SELECT count(*) FROM keen.session_events AS e WHERE e.user_id = '00000000-0000-4000-8000-000000000001'::uuid$$,
  $$VALUES (9::bigint)$$,
  '9 events: 4 started, 2 progress, 2 ended, root cancelled (the retry and the refusals write none)');
SELECT set_config('test.xid', pg_current_xact_id()::text, true);
SELECT results_eq($$SELECT DISTINCT e.id >> 20 FROM keen.session_events AS e WHERE e.user_id = '00000000-0000-4000-8000-000000000001'::uuid$$,
  ARRAY[current_setting('test.xid')::bigint], 'every event id is this coordinator transaction''s id * 2^20 + n');
SELECT results_eq(
  $$SELECT s.session_id, array_agg(e.seq ORDER BY e.id), array_agg(e.event_type ORDER BY e.id)
      FROM keen.session_events AS e JOIN keen.agent_sessions AS s ON s.user_id = e.user_id AND s.id = e.session_id
     WHERE e.user_id = '00000000-0000-4000-8000-000000000001'::uuid AND s.user_id = '00000000-0000-4000-8000-000000000001'::uuid
     GROUP BY s.session_id ORDER BY s.session_id$$,
  $$VALUES ('child', ARRAY[1, 2, 3, 4]::bigint[], ARRAY['session.started', 'session.progress', 'session.progress', 'session.completed']),
           ('grandchild', ARRAY[1, 2]::bigint[], ARRAY['session.started', 'session.failed']),
           ('other', ARRAY[1]::bigint[], ARRAY['session.started']),
           ('root', ARRAY[1, 2]::bigint[], ARRAY['session.started', 'session.cancelled'])$$,
  'each session''s events are numbered 1, 2, 3… in id order');
SELECT is_empty($$SELECT * FROM keen.list_session_events()$$,
  'list_session_events: this transaction''s events are above the horizon (its xid >= xmin)');
SELECT is_empty($$SELECT * FROM keen.list_session_events(p_session_id => 'child', p_after_id => 0, p_limit => 10)$$,
  'list_session_events of one session, likewise');
SELECT ok(keen.session_events_waiting(), 'session_events_waiting: events wait above the horizon');
SELECT ok(keen.session_events_waiting('child'), 'session_events_waiting of one session');
SELECT throws_ok($$SELECT * FROM keen.list_session_events(p_after_id => -1)$$, 'KE013', NULL, 'a negative cursor raises KE013');

-- Usage figures: queued by the functions, added by the coordinator's deferred trigger.
SET CONSTRAINTS keen._500_flush IMMEDIATE;
SELECT results_eq(
  $$SELECT sessions_started, sessions_completed, sessions_failed, sessions_cancelled, tokens_used, tool_calls, total_cost
      FROM keen.daily_usage_stats AS d WHERE d.user_id = '00000000-0000-4000-8000-000000000001'::uuid$$,
  $$VALUES (4, 1, 1, 1, 50::bigint, 2::bigint, 0::numeric)$$,
  'daily_usage_stats: 4 started, 1 completed, 1 failed, 1 cancelled, the tokens and tool calls (cost 0 at completion)');
SELECT is((SELECT count(*) FROM keen.session_usage_queue), 0::bigint, 'the queue is empty once flushed');

-- ===== tenant b (the other worker): its own sessions, nothing of a's ================
SELECT set_config('role', 'keen_app', true);
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-000000000002';
SELECT is((keen.start_session(p_session_id => 'root', p_vision => 'v', p_working_directory => '/w',
                              p_git_branch => 'main')).user_id, '00000000-0000-4000-8000-000000000002'::uuid,
  'tenant b starts a session with the same external id');
SELECT is((keen.open_connection(p_connection_id => 'ws-1', p_client_ip => '10.0.0.9', p_session_id => 'root')).user_id,
  '00000000-0000-4000-8000-000000000002'::uuid, 'and a connection with the same id');
SELECT throws_ok($$SELECT keen.cancel_session('other')$$, 'KE006', NULL, 'tenant a''s session is unknown to b');
SELECT set_config('role', 'keen_owner', true);
SELECT results_eq($$SELECT session_id, depth FROM keen.session_tree('root')$$, $$VALUES ('root', 0)$$,
  'b''s tree is b''s');
SELECT is((SELECT count(*) FROM keen.list_sessions()), 1::bigint, 'b lists its one session');

-- ===== operators (keen_owner, no tenant context needed) ===========================
SELECT set_config('app.current_user_id', '', true);
UPDATE keen.websocket_connections AS c SET last_ping_at = now() - interval '10 minutes'
 WHERE c.user_id = '00000000-0000-4000-8000-000000000001'::uuid AND c.connection_id = 'ws-1';
UPDATE keen.websocket_connections AS c SET last_ping_at = now() - interval '10 minutes'
 WHERE c.user_id = '00000000-0000-4000-8000-000000000002'::uuid AND c.connection_id = 'ws-1';
SELECT is(keen.reap_stale_connections(interval '2 minutes'), 2,
  'reap_stale_connections reaps the silent connections of both tenants, tenant by tenant');
SELECT is(keen.reap_stale_connections(interval '2 minutes'), 0, 'a second run finds none');
SELECT results_eq(
  $$SELECT connection_status, websocket_connections FROM keen.websocket_connections AS c
      JOIN keen.agent_sessions AS s ON s.user_id = c.user_id AND s.id = c.session_id
     WHERE c.user_id = '00000000-0000-4000-8000-000000000001'::uuid AND s.user_id = '00000000-0000-4000-8000-000000000001'::uuid
       AND c.connection_id = 'ws-1'$$,
  $$VALUES ('stale', '{}'::text[])$$, 'a''s reaped connection is stale and gone from root''s list');
SELECT results_eq($$SELECT s.websocket_connections FROM keen.agent_sessions AS s
                     WHERE s.user_id = '00000000-0000-4000-8000-000000000002'::uuid AND s.session_id = 'root'$$,
  $$VALUES ('{}'::text[])$$, 'b''s too');
SELECT throws_ok($$SELECT keen.reap_stale_connections(interval '0')$$, 'KE013', NULL, 'a non-positive idle time raises KE013');
UPDATE keen.session_events AS e SET created_at = now() - interval '40 days'
 WHERE e.user_id = '00000000-0000-4000-8000-000000000001'::uuid AND e.seq = 1;
UPDATE keen.session_events AS e SET created_at = now() - interval '40 days'
 WHERE e.user_id = '00000000-0000-4000-8000-000000000002'::uuid;
SELECT is(keen.prune_session_events(interval '30 days'), 5::bigint,
  'prune_session_events deletes the old events of both tenants (a''s 4 first events, b''s 1), tenant by tenant');
SELECT results_eq($$SELECT count(*) FROM keen.session_events AS e WHERE e.user_id = '00000000-0000-4000-8000-000000000001'::uuid$$, $$VALUES (5::bigint)$$,
  'a keeps its 5 recent events');
SELECT is(keen.prune_session_events(), 0::bigint, 'nothing older than the default 30 days is left');
SELECT throws_ok($$SELECT keen.prune_session_events(interval '-1 day')$$, 'KE013', NULL,
  'a non-positive retention raises KE013');

-- ===== a charged completion (last: it adds figures) ===============================
-- Tenant c's first figure of the day is the ledger row of its capture (the session figures
-- wait for commit again): keen.add_ledger_usage (the credits area's) then creates the day's
-- row with INSERT … ON CONFLICT DO UPDATE SET updated_at = now(), which Citus refuses until
-- that function passes now() by value.
SET CONSTRAINTS keen._500_flush DEFERRED;
SELECT set_config('role', 'keen_owner', true);
INSERT INTO keen.users (id, email, username, password_hash) VALUES
  ('00000000-0000-4000-8000-000000000003'::uuid, 'citus-c@example.com', 'citus_c', repeat('c', 40));
INSERT INTO keen.credit_accounts (user_id, current_balance, lifetime_purchased) VALUES
  ('00000000-0000-4000-8000-000000000003'::uuid, 100, 100);
SELECT set_config('role', 'keen_app', true);
SET LOCAL app.current_user_id = '00000000-0000-4000-8000-000000000003';
SELECT lives_ok($$SELECT keen.start_session(p_session_id => 'paid', p_vision => 'v', p_working_directory => '/w',
                                           p_git_branch => 'main')$$, 'a session to pay for');
SELECT lives_ok($$SELECT keen.complete_session(p_session_id => 'paid', p_success => true, p_total_cost => 0.25)$$,
  'complete_session charges 0.25 by capturing the session''s hold');

SELECT * FROM finish();
ROLLBACK;
