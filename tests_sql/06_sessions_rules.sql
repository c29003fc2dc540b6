-- Data rules of agent_sessions, session_events and websocket_connections: every row that
-- breaks one fails with its constraint's SQLSTATE and name, and writes nothing.
BEGIN;
SELECT plan(35);

-- ===== fixtures (as the owner) ===============================================
-- The constraints are the last line of defence under the functions and triggers (whose
-- behaviour the domain's own test files cover): with this transaction's triggers off,
-- each rule below is proved by its constraint alone.
ALTER TABLE keen.users DISABLE TRIGGER USER;
ALTER TABLE keen.agent_sessions DISABLE TRIGGER USER;
ALTER TABLE keen.session_events DISABLE TRIGGER USER;
ALTER TABLE keen.websocket_connections DISABLE TRIGGER USER;
-- alice has a root session and its child; bob has a root session.
INSERT INTO keen.users (id, email, username, password_hash) VALUES
  ('00000000-0000-4000-8000-00000000a11c', 'alice@example.com', 'alice', repeat('a', 32)),
  ('00000000-0000-4000-8000-000000000b0b', 'bob@example.com', 'bob', repeat('b', 32));
INSERT INTO keen.agent_sessions (id, user_id, session_id, git_branch, vision, working_directory) VALUES
  ('00000000-0000-4000-8000-00000005a001', '00000000-0000-4000-8000-00000000a11c', 'a-root', 'main', 'v', '/w'),
  ('00000000-0000-4000-8000-00000005b001', '00000000-0000-4000-8000-000000000b0b', 'b-root', 'main', 'v', '/w');
INSERT INTO keen.agent_sessions (id, user_id, session_id, parent_session_id, session_depth, git_branch, vision, working_directory)
VALUES ('00000000-0000-4000-8000-00000005a002', '00000000-0000-4000-8000-00000000a11c', 'a-child',
        '00000000-0000-4000-8000-00000005a001', 1, 'main', 'v', '/w');
INSERT INTO keen.session_events (id, user_id, session_id, seq, event_type) VALUES
  (1, '00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000005a001', 1, 'session.started');
INSERT INTO keen.websocket_connections (user_id, connection_id, client_ip, client_type) VALUES
  ('00000000-0000-4000-8000-00000000a11c', 'conn-a', '10.0.0.1', 'web');

-- ===== agent_sessions: enumerations ==========================================
SELECT lives_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory,
                                     current_phase, execution_status, end_time)
    SELECT '00000000-0000-4000-8000-00000000a11c', 'enum-' || n, 'b', 'v', '/w',
           (ARRAY['EXPLORE', 'PLAN', 'SUMMON', 'COMPLETE'])[n],
           (ARRAY['running', 'completed', 'failed', 'cancelled'])[n],
           CASE WHEN n > 1 THEN now() END
    FROM generate_series(1, 4) AS n$$,
  'agent_sessions accept every listed phase and execution status');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, current_phase)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', 'b', 'v', '/w', 'BUILD')$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_current_phase_check"',
  'an unknown phase is refused');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, execution_status, end_time)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', 'b', 'v', '/w', 'paused', now())$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_execution_status_check"',
  'an unknown execution status is refused');
SELECT is(
  ARRAY(SELECT success FROM keen.agent_sessions WHERE session_id LIKE 'enum-%' ORDER BY session_id),
  ARRAY[NULL, true, false, NULL]::boolean[],
  'success follows execution status: unknown while running or cancelled');

-- ===== agent_sessions: the tree ==============================================
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, parent_session_id, session_depth, git_branch, vision, working_directory)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', '00000000-0000-4000-8000-00000005b001', 1, 'b', 'v', '/w')$$,
  '23503', 'insert or update on table "agent_sessions" violates foreign key constraint "agent_sessions_parent_fkey"',
  'a session cannot be the child of another user''s session');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, parent_session_id, session_depth, git_branch, vision, working_directory)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', '00000000-0000-4000-8000-00000005a001', -1, 'b', 'v', '/w')$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_session_depth_check"',
  'a depth below 0 is refused');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, session_depth, git_branch, vision, working_directory)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', 1, 'b', 'v', '/w')$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_root_check"',
  'a root session has depth 0');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, parent_session_id, git_branch, vision, working_directory)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', '00000000-0000-4000-8000-00000005a001', 'b', 'v', '/w')$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_root_check"',
  'a child session has a depth above 0');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (id, user_id, session_id, parent_session_id, session_depth, git_branch, vision, working_directory)
    VALUES ('00000000-0000-4000-8000-00000005a0ff', '00000000-0000-4000-8000-00000000a11c', 'x',
            '00000000-0000-4000-8000-00000005a0ff', 1, 'b', 'v', '/w')$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_parent_check"',
  'a session cannot be its own parent');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'a-root', 'b', 'v', '/w')$$,
  '23505', 'duplicate key value violates unique constraint "agent_sessions_user_id_session_id_key"',
  'a session id is unique within its tenant');
SELECT lives_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory)
    VALUES ('00000000-0000-4000-8000-000000000b0b', 'a-root', 'b', 'v', '/w')$$,
  'another tenant may use the same session id (ids reveal nothing across tenants)');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '', 'b', 'v', '/w')$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_session_id_check"',
  'an empty session id is refused');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, end_time)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', 'b', 'v', '/w', now())$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_end_time_check"',
  'a running session has no end time');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, execution_status)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', 'b', 'v', '/w', 'completed')$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_end_time_check"',
  'a finished session has an end time');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, tokens_used)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', 'b', 'v', '/w', -1)$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_counters_check"',
  'session counters and cost cannot be negative');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, total_cost)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', 'b', 'v', '/w', 'NaN')$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_counters_check"',
  'a NaN session cost is refused');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, context_window_size)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', 'b', 'v', '/w', 0)$$,
  '23514', 'new row for relation "agent_sessions" violates check constraint "agent_sessions_context_window_size_check"',
  'a context window is positive');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, success)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', 'b', 'v', '/w', true)$$,
  '428C9', NULL,
  'success cannot be written: it is derived from execution_status');
SELECT throws_ok(
  $$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory)
    VALUES ('00000000-0000-4000-8000-0000000000ff', 'x', 'b', 'v', '/w')$$,
  '23503', 'insert or update on table "agent_sessions" violates foreign key constraint "agent_sessions_user_id_fkey"',
  'a session belongs to an existing user');

-- ===== session_events ========================================================
SELECT throws_ok(
  $$INSERT INTO keen.session_events (id, user_id, session_id, seq, event_type)
    VALUES (3, '00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000005b001', 1, 'session.started')$$,
  '23503', 'insert or update on table "session_events" violates foreign key constraint "session_events_session_fkey"',
  'an event cannot be logged on another user''s session');
SELECT throws_ok(
  $$INSERT INTO keen.session_events (id, user_id, session_id, seq, event_type)
    VALUES (4, '00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000005a001', 1, 'session.progress')$$,
  '23505', 'duplicate key value violates unique constraint "session_events_user_id_session_id_seq_key"',
  'an event number is used once per session');
SELECT throws_ok(
  $$INSERT INTO keen.session_events (id, user_id, session_id, seq, event_type)
    VALUES (5, '00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000005a001', 0, 'session.progress')$$,
  '23514', 'new row for relation "session_events" violates check constraint "session_events_seq_check"',
  'event numbers start at 1');
SELECT throws_ok(
  $$INSERT INTO keen.session_events (id, user_id, session_id, seq, event_type)
    VALUES (6, '00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000005a001', 2, 'Session Started')$$,
  '23514', 'new row for relation "session_events" violates check constraint "session_events_event_type_check"',
  'an event type is a lower-case dotted name');

-- ===== websocket_connections =================================================
SELECT lives_ok(
  $$INSERT INTO keen.websocket_connections (user_id, connection_id, client_ip, client_type, connection_status, disconnected_at)
    SELECT '00000000-0000-4000-8000-00000000a11c', 'enum-' || n, '10.0.0.2',
           (ARRAY['web', 'cli', 'ide', 'api'])[n], (ARRAY['active', 'closed', 'stale', 'closed'])[n],
           CASE WHEN n > 1 THEN now() END
    FROM generate_series(1, 4) AS n$$,
  'websocket_connections accept every listed client type and status');
SELECT throws_ok(
  $$INSERT INTO keen.websocket_connections (user_id, connection_id, client_ip, client_type)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', '10.0.0.1', 'dashboard')$$,
  '23514', 'new row for relation "websocket_connections" violates check constraint "websocket_connections_client_type_check"',
  'an unknown client type is refused (the original''s "dashboard" and "mobile" included)');
SELECT throws_ok(
  $$INSERT INTO keen.websocket_connections (user_id, connection_id, client_ip, client_type, connection_status)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', '10.0.0.1', 'web', 'inactive')$$,
  '23514', 'new row for relation "websocket_connections" violates check constraint "websocket_connections_connection_status_check"',
  'an unknown connection status is refused');
SELECT throws_ok(
  $$INSERT INTO keen.websocket_connections (user_id, connection_id, client_ip, client_type, session_id)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', '10.0.0.1', 'web', '00000000-0000-4000-8000-00000005b001')$$,
  '23503', 'insert or update on table "websocket_connections" violates foreign key constraint "websocket_connections_session_fkey"',
  'a connection cannot follow another user''s session');
SELECT throws_ok(
  $$INSERT INTO keen.websocket_connections (user_id, connection_id, client_ip, client_type)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'conn-a', '10.0.0.1', 'cli')$$,
  '23505', 'duplicate key value violates unique constraint "websocket_connections_user_id_connection_id_key"',
  'a connection id is unique within its tenant');
SELECT throws_ok(
  $$INSERT INTO keen.websocket_connections (user_id, connection_id, client_ip, client_type, connection_status)
    VALUES ('00000000-0000-4000-8000-00000000a11c', 'x', '10.0.0.1', 'web', 'closed')$$,
  '23514', 'new row for relation "websocket_connections" violates check constraint "websocket_connections_disconnected_at_check"',
  'a closed connection has a disconnection time');
SELECT throws_ok(
  $$INSERT INTO keen.websocket_connections (user_id, connection_id, client_ip, client_type)
    VALUES ('00000000-0000-4000-8000-00000000a11c', '', '10.0.0.1', 'web')$$,
  '23514', 'new row for relation "websocket_connections" violates check constraint "websocket_connections_connection_id_check"',
  'an empty connection id is refused');

-- ===== deleting ==============================================================
SELECT throws_ok(
  $$DELETE FROM keen.agent_sessions WHERE id = '00000000-0000-4000-8000-00000005a001'$$,
  '23503', NULL,
  'a parent session cannot be deleted while it has children');

-- ===== nothing was written by the refused rows ================================
SELECT is((SELECT count(*) FROM keen.agent_sessions), 8::bigint,
  'agent_sessions holds only the fixtures and the accepted rows');
SELECT is((SELECT count(*) FROM keen.agent_sessions WHERE session_id IN ('x', '')), 0::bigint,
  'no refused session row exists');
SELECT is((SELECT count(*) FROM keen.session_events), 1::bigint,
  'session_events holds only the fixture');
SELECT is((SELECT count(*) FROM keen.websocket_connections), 5::bigint,
  'websocket_connections holds only the fixture and the accepted rows');

SELECT * FROM finish();
ROLLBACK;
