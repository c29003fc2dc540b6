-- Structure: agent sessions, their event log and websocket connections.
-- Every column (type, nullability, default), key, foreign key, CHECK constraint and index;
-- the rules behind the constraints are exercised in 05-08_*_rules.sql.
BEGIN;
SELECT plan(235);

-- ===== keen.agent_sessions ========================================================
SELECT has_table('keen', 'agent_sessions', 'keen.agent_sessions exists');
SELECT table_owner_is('keen', 'agent_sessions', 'keen_owner', 'keen_owner owns keen.agent_sessions');
SELECT columns_are('keen', 'agent_sessions', ARRAY[
    'id', 'user_id', 'session_id', 'parent_session_id', 'session_depth', 'git_branch',
    'vision', 'working_directory', 'current_phase', 'start_time', 'end_time',
    'last_activity_at', 'phase_started_at', 'iteration_count', 'tool_calls_count',
    'total_cost', 'tokens_used', 'context_window_size', 'files_modified', 'files_created',
    'files_deleted', 'execution_status', 'success', 'error_message', 'completion_report',
    'streaming_enabled', 'streaming_time', 'websocket_connections', 'agent_options',
    'last_event_seq', 'created_at', 'updated_at', 'start_seq', 'hold_id'],
  'keen.agent_sessions has exactly the expected columns');
SELECT is((SELECT attidentity::text FROM pg_attribute WHERE attrelid = 'keen.agent_sessions'::regclass AND attname = 'start_seq'),
          'a', 'agent_sessions.start_seq is GENERATED ALWAYS AS IDENTITY (the start order)');
SELECT col_is_null('keen', 'agent_sessions', 'hold_id', 'agent_sessions.hold_id is nullable (no hold before the first cost)');
SELECT col_type_is('keen', 'agent_sessions', 'id', 'uuid', 'agent_sessions.id is uuid');
SELECT col_not_null('keen', 'agent_sessions', 'id', 'agent_sessions.id is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'id', 'gen_random_uuid()', 'agent_sessions.id defaults to gen_random_uuid()');
SELECT col_type_is('keen', 'agent_sessions', 'user_id', 'uuid', 'agent_sessions.user_id is uuid');
SELECT col_not_null('keen', 'agent_sessions', 'user_id', 'agent_sessions.user_id is NOT NULL');
SELECT col_hasnt_default('keen', 'agent_sessions', 'user_id', 'agent_sessions.user_id has no default');
SELECT col_type_is('keen', 'agent_sessions', 'session_id', 'text', 'agent_sessions.session_id is text');
SELECT col_not_null('keen', 'agent_sessions', 'session_id', 'agent_sessions.session_id is NOT NULL');
SELECT col_hasnt_default('keen', 'agent_sessions', 'session_id', 'agent_sessions.session_id has no default');
SELECT col_type_is('keen', 'agent_sessions', 'parent_session_id', 'uuid', 'agent_sessions.parent_session_id is uuid');
SELECT col_is_null('keen', 'agent_sessions', 'parent_session_id', 'agent_sessions.parent_session_id is nullable');
SELECT col_hasnt_default('keen', 'agent_sessions', 'parent_session_id', 'agent_sessions.parent_session_id has no default');
SELECT col_type_is('keen', 'agent_sessions', 'session_depth', 'integer', 'agent_sessions.session_depth is integer');
SELECT col_not_null('keen', 'agent_sessions', 'session_depth', 'agent_sessions.session_depth is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'session_depth', '0', 'agent_sessions.session_depth defaults to 0');
SELECT col_type_is('keen', 'agent_sessions', 'git_branch', 'text', 'agent_sessions.git_branch is text');
SELECT col_not_null('keen', 'agent_sessions', 'git_branch', 'agent_sessions.git_branch is NOT NULL');
SELECT col_hasnt_default('keen', 'agent_sessions', 'git_branch', 'agent_sessions.git_branch has no default');
SELECT col_type_is('keen', 'agent_sessions', 'vision', 'text', 'agent_sessions.vision is text');
SELECT col_not_null('keen', 'agent_sessions', 'vision', 'agent_sessions.vision is NOT NULL');
SELECT col_hasnt_default('keen', 'agent_sessions', 'vision', 'agent_sessions.vision has no default');
SELECT col_type_is('keen', 'agent_sessions', 'working_directory', 'text', 'agent_sessions.working_directory is text');
SELECT col_not_null('keen', 'agent_sessions', 'working_directory', 'agent_sessions.working_directory is NOT NULL');
SELECT col_hasnt_default('keen', 'agent_sessions', 'working_directory', 'agent_sessions.working_directory has no default');
SELECT col_type_is('keen', 'agent_sessions', 'current_phase', 'text', 'agent_sessions.current_phase is text');
SELECT col_not_null('keen', 'agent_sessions', 'current_phase', 'agent_sessions.current_phase is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'current_phase', 'EXPLORE', 'agent_sessions.current_phase defaults to EXPLORE');
SELECT col_type_is('keen', 'agent_sessions', 'start_time', 'timestamp with time zone', 'agent_sessions.start_time is timestamp with time zone');
SELECT col_not_null('keen', 'agent_sessions', 'start_time', 'agent_sessions.start_time is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'start_time', 'now()', 'agent_sessions.start_time defaults to now()');
SELECT col_type_is('keen', 'agent_sessions', 'end_time', 'timestamp with time zone', 'agent_sessions.end_time is timestamp with time zone');
SELECT col_is_null('keen', 'agent_sessions', 'end_time', 'agent_sessions.end_time is nullable');
SELECT col_hasnt_default('keen', 'agent_sessions', 'end_time', 'agent_sessions.end_time has no default');
SELECT col_type_is('keen', 'agent_sessions', 'last_activity_at', 'timestamp with time zone', 'agent_sessions.last_activity_at is timestamp with time zone');
SELECT col_not_null('keen', 'agent_sessions', 'last_activity_at', 'agent_sessions.last_activity_at is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'last_activity_at', 'now()', 'agent_sessions.last_activity_at defaults to now()');
SELECT col_type_is('keen', 'agent_sessions', 'phase_started_at', 'timestamp with time zone', 'agent_sessions.phase_started_at is timestamp with time zone');
SELECT col_not_null('keen', 'agent_sessions', 'phase_started_at', 'agent_sessions.phase_started_at is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'phase_started_at', 'now()', 'agent_sessions.phase_started_at defaults to now()');
SELECT col_type_is('keen', 'agent_sessions', 'iteration_count', 'integer', 'agent_sessions.iteration_count is integer');
SELECT col_not_null('keen', 'agent_sessions', 'iteration_count', 'agent_sessions.iteration_count is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'iteration_count', '0', 'agent_sessions.iteration_count defaults to 0');
SELECT col_type_is('keen', 'agent_sessions', 'tool_calls_count', 'integer', 'agent_sessions.tool_calls_count is integer');
SELECT col_not_null('keen', 'agent_sessions', 'tool_calls_count', 'agent_sessions.tool_calls_count is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'tool_calls_count', '0', 'agent_sessions.tool_calls_count defaults to 0');
SELECT col_type_is('keen', 'agent_sessions', 'total_cost', 'numeric(14,6)', 'agent_sessions.total_cost is numeric(14,6)');
SELECT col_not_null('keen', 'agent_sessions', 'total_cost', 'agent_sessions.total_cost is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'total_cost', '0', 'agent_sessions.total_cost defaults to 0');
SELECT col_type_is('keen', 'agent_sessions', 'tokens_used', 'bigint', 'agent_sessions.tokens_used is bigint');
SELECT col_not_null('keen', 'agent_sessions', 'tokens_used', 'agent_sessions.tokens_used is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'tokens_used', '0', 'agent_sessions.tokens_used defaults to 0');
SELECT col_type_is('keen', 'agent_sessions', 'context_window_size', 'integer', 'agent_sessions.context_window_size is integer');
SELECT col_not_null('keen', 'agent_sessions', 'context_window_size', 'agent_sessions.context_window_size is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'context_window_size', '1000000', 'agent_sessions.context_window_size defaults to 1000000');
SELECT col_type_is('keen', 'agent_sessions', 'files_modified', 'text[]', 'agent_sessions.files_modified is text[]');
SELECT col_not_null('keen', 'agent_sessions', 'files_modified', 'agent_sessions.files_modified is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'files_modified', '{}', 'agent_sessions.files_modified defaults to {}');
SELECT col_type_is('keen', 'agent_sessions', 'files_created', 'text[]', 'agent_sessions.files_created is text[]');
SELECT col_not_null('keen', 'agent_sessions', 'files_created', 'agent_sessions.files_created is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'files_created', '{}', 'agent_sessions.files_created defaults to {}');
SELECT col_type_is('keen', 'agent_sessions', 'files_deleted', 'text[]', 'agent_sessions.files_deleted is text[]');
SELECT col_not_null('keen', 'agent_sessions', 'files_deleted', 'agent_sessions.files_deleted is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'files_deleted', '{}', 'agent_sessions.files_deleted defaults to {}');
SELECT col_type_is('keen', 'agent_sessions', 'execution_status', 'text', 'agent_sessions.execution_status is text');
SELECT col_not_null('keen', 'agent_sessions', 'execution_status', 'agent_sessions.execution_status is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'execution_status', 'running', 'agent_sessions.execution_status defaults to running');
SELECT col_type_is('keen', 'agent_sessions', 'success', 'boolean', 'agent_sessions.success is boolean');
SELECT col_is_null('keen', 'agent_sessions', 'success', 'agent_sessions.success is nullable');
SELECT is((SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef AS d JOIN pg_attribute AS a ON (a.attrelid, a.attnum) = (d.adrelid, d.adnum)
            WHERE d.adrelid = 'keen.agent_sessions'::regclass AND a.attname = 'success' AND a.attgenerated = 's'),
          '
CASE execution_status
    WHEN ''completed''::text THEN true
    WHEN ''failed''::text THEN false
    ELSE NULL::boolean
END', 'agent_sessions.success is a stored generated column');
SELECT col_type_is('keen', 'agent_sessions', 'error_message', 'text', 'agent_sessions.error_message is text');
SELECT col_is_null('keen', 'agent_sessions', 'error_message', 'agent_sessions.error_message is nullable');
SELECT col_hasnt_default('keen', 'agent_sessions', 'error_message', 'agent_sessions.error_message has no default');
SELECT col_type_is('keen', 'agent_sessions', 'completion_report', 'jsonb', 'agent_sessions.completion_report is jsonb');
SELECT col_is_null('keen', 'agent_sessions', 'completion_report', 'agent_sessions.completion_report is nullable');
SELECT col_hasnt_default('keen', 'agent_sessions', 'completion_report', 'agent_sessions.completion_report has no default');
SELECT col_type_is('keen', 'agent_sessions', 'streaming_enabled', 'boolean', 'agent_sessions.streaming_enabled is boolean');
SELECT col_not_null('keen', 'agent_sessions', 'streaming_enabled', 'agent_sessions.streaming_enabled is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'streaming_enabled', 'true', 'agent_sessions.streaming_enabled defaults to true');
SELECT col_type_is('keen', 'agent_sessions', 'streaming_time', 'integer', 'agent_sessions.streaming_time is integer');
SELECT col_is_null('keen', 'agent_sessions', 'streaming_time', 'agent_sessions.streaming_time is nullable');
SELECT col_hasnt_default('keen', 'agent_sessions', 'streaming_time', 'agent_sessions.streaming_time has no default');
SELECT col_type_is('keen', 'agent_sessions', 'websocket_connections', 'text[]', 'agent_sessions.websocket_connections is text[]');
SELECT col_not_null('keen', 'agent_sessions', 'websocket_connections', 'agent_sessions.websocket_connections is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'websocket_connections', '{}', 'agent_sessions.websocket_connections defaults to {}');
SELECT col_type_is('keen', 'agent_sessions', 'agent_options', 'jsonb', 'agent_sessions.agent_options is jsonb');
SELECT col_not_null('keen', 'agent_sessions', 'agent_options', 'agent_sessions.agent_options is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'agent_options', '{}', 'agent_sessions.agent_options defaults to {}');
SELECT col_type_is('keen', 'agent_sessions', 'last_event_seq', 'bigint', 'agent_sessions.last_event_seq is bigint');
SELECT col_not_null('keen', 'agent_sessions', 'last_event_seq', 'agent_sessions.last_event_seq is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'last_event_seq', '0', 'agent_sessions.last_event_seq defaults to 0');
SELECT col_type_is('keen', 'agent_sessions', 'created_at', 'timestamp with time zone', 'agent_sessions.created_at is timestamp with time zone');
SELECT col_not_null('keen', 'agent_sessions', 'created_at', 'agent_sessions.created_at is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'created_at', 'now()', 'agent_sessions.created_at defaults to now()');
SELECT col_type_is('keen', 'agent_sessions', 'updated_at', 'timestamp with time zone', 'agent_sessions.updated_at is timestamp with time zone');
SELECT col_not_null('keen', 'agent_sessions', 'updated_at', 'agent_sessions.updated_at is NOT NULL');
SELECT col_default_is('keen', 'agent_sessions', 'updated_at', 'now()', 'agent_sessions.updated_at defaults to now()');
-- keys
SELECT hasnt_index('keen', 'agent_sessions', 'no UNIQUE (user_id, id) beside the primary key');
SELECT col_is_unique('keen', 'agent_sessions', ARRAY['user_id', 'session_id'], 'agent_sessions_user_id_session_id_key: UNIQUE (user_id, session_id)');
SELECT has_pk('keen', 'agent_sessions', 'keen.agent_sessions has a primary key');
SELECT col_is_pk('keen', 'agent_sessions', ARRAY['user_id', 'id'], 'agent_sessions_pkey: PRIMARY KEY (user_id, id)');
-- foreign keys (the composite ones carry user_id: no cross-tenant reference)
SELECT fk_ok('keen', 'agent_sessions', ARRAY['user_id', 'parent_session_id'], 'keen', 'agent_sessions', ARRAY['user_id', 'id'],
  'agent_sessions_parent_fkey: (user_id, parent_session_id) references keen.agent_sessions (user_id, id)');
SELECT fk_ok('keen', 'agent_sessions', ARRAY['user_id'], 'keen', 'users', ARRAY['id'],
  'agent_sessions_user_id_fkey: (user_id) references keen.users (id)');
SELECT set_eq(
  $$SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'keen.agent_sessions'::regclass AND contype = 'f'$$,
  $$VALUES
    ('agent_sessions_parent_fkey', 'FOREIGN KEY (user_id, parent_session_id) REFERENCES keen.agent_sessions(user_id, id) ON DELETE RESTRICT'),
    ('agent_sessions_user_id_fkey', 'FOREIGN KEY (user_id) REFERENCES keen.users(id) ON DELETE CASCADE')$$,
  'keen.agent_sessions has exactly its foreign keys, with their ON DELETE actions');
-- check constraints
SELECT has_check('keen', 'agent_sessions', 'keen.agent_sessions has CHECK constraints');
SELECT set_eq(
  $$SELECT conname::text FROM pg_constraint WHERE conrelid = 'keen.agent_sessions'::regclass AND contype = 'c'$$,
  ARRAY[
    'agent_sessions_context_window_size_check', 'agent_sessions_counters_check',
    'agent_sessions_current_phase_check', 'agent_sessions_end_time_check',
    'agent_sessions_execution_status_check', 'agent_sessions_last_event_seq_check',
    'agent_sessions_parent_check', 'agent_sessions_root_check',
    'agent_sessions_session_depth_check', 'agent_sessions_session_id_check',
    'agent_sessions_streaming_time_check'],
  'keen.agent_sessions has exactly its named CHECK constraints');
-- indexes
SELECT indexes_are('keen', 'agent_sessions', ARRAY[
    'agent_sessions_end_time_idx', 'agent_sessions_user_id_parent_session_id_idx',
    'agent_sessions_pkey', 'agent_sessions_start_time_idx',
    'agent_sessions_user_id_session_id_key',
    'agent_sessions_user_id_start_time_idx',
    'agent_sessions_user_id_status_start_time_idx'],
  'keen.agent_sessions has exactly the expected indexes');
SELECT is((SELECT pg_get_indexdef('keen.agent_sessions_end_time_idx'::regclass)),
  'CREATE INDEX agent_sessions_end_time_idx ON keen.agent_sessions USING btree (end_time)',
  'agent_sessions_end_time_idx: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.agent_sessions_user_id_parent_session_id_idx'::regclass)),
  'CREATE INDEX agent_sessions_user_id_parent_session_id_idx ON keen.agent_sessions USING btree (user_id, parent_session_id) WHERE (parent_session_id IS NOT NULL)',
  'agent_sessions_user_id_parent_session_id_idx: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.agent_sessions_start_time_idx'::regclass)),
  'CREATE INDEX agent_sessions_start_time_idx ON keen.agent_sessions USING btree (start_time)',
  'agent_sessions_start_time_idx: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.agent_sessions_user_id_start_time_idx'::regclass)),
  'CREATE INDEX agent_sessions_user_id_start_time_idx ON keen.agent_sessions USING btree (user_id, start_time DESC, id DESC)',
  'agent_sessions_user_id_start_time_idx: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.agent_sessions_user_id_status_start_time_idx'::regclass)),
  'CREATE INDEX agent_sessions_user_id_status_start_time_idx ON keen.agent_sessions USING btree (user_id, execution_status, start_time DESC, id DESC)',
  'agent_sessions_user_id_status_start_time_idx: its columns, order, uniqueness and predicate');

-- ===== keen.session_events ========================================================
SELECT has_table('keen', 'session_events', 'keen.session_events exists');
SELECT table_owner_is('keen', 'session_events', 'keen_owner', 'keen_owner owns keen.session_events');
SELECT columns_are('keen', 'session_events', ARRAY[
    'id', 'user_id', 'session_id', 'seq', 'event_type', 'payload', 'created_at'],
  'keen.session_events has exactly the expected columns');
SELECT col_type_is('keen', 'session_events', 'id', 'bigint', 'session_events.id is bigint');
SELECT col_not_null('keen', 'session_events', 'id', 'session_events.id is NOT NULL');
SELECT is((SELECT attidentity::text FROM pg_attribute WHERE attrelid = 'keen.session_events'::regclass AND attname = 'id'),
          '', 'session_events.id is no identity: no sequence orders one user''s writers');
SELECT col_hasnt_default('keen', 'session_events', 'id',
  'session_events.id has no default: keen.append_session_event gives it (the coordinator''s transaction id * 2^20 + count)');
SELECT col_type_is('keen', 'session_events', 'user_id', 'uuid', 'session_events.user_id is uuid');
SELECT col_not_null('keen', 'session_events', 'user_id', 'session_events.user_id is NOT NULL');
SELECT col_hasnt_default('keen', 'session_events', 'user_id', 'session_events.user_id has no default');
SELECT col_type_is('keen', 'session_events', 'session_id', 'uuid', 'session_events.session_id is uuid');
SELECT col_not_null('keen', 'session_events', 'session_id', 'session_events.session_id is NOT NULL');
SELECT col_hasnt_default('keen', 'session_events', 'session_id', 'session_events.session_id has no default');
SELECT col_type_is('keen', 'session_events', 'seq', 'bigint', 'session_events.seq is bigint');
SELECT col_not_null('keen', 'session_events', 'seq', 'session_events.seq is NOT NULL');
SELECT col_hasnt_default('keen', 'session_events', 'seq', 'session_events.seq has no default');
SELECT col_type_is('keen', 'session_events', 'event_type', 'text', 'session_events.event_type is text');
SELECT col_not_null('keen', 'session_events', 'event_type', 'session_events.event_type is NOT NULL');
SELECT col_hasnt_default('keen', 'session_events', 'event_type', 'session_events.event_type has no default');
SELECT col_type_is('keen', 'session_events', 'payload', 'jsonb', 'session_events.payload is jsonb');
SELECT col_not_null('keen', 'session_events', 'payload', 'session_events.payload is NOT NULL');
SELECT col_default_is('keen', 'session_events', 'payload', '{}', 'session_events.payload defaults to {}');
SELECT col_type_is('keen', 'session_events', 'created_at', 'timestamp with time zone', 'session_events.created_at is timestamp with time zone');
SELECT col_not_null('keen', 'session_events', 'created_at', 'session_events.created_at is NOT NULL');
SELECT col_default_is('keen', 'session_events', 'created_at', 'now()', 'session_events.created_at defaults to now()');
-- keys
SELECT col_is_unique('keen', 'session_events', ARRAY['user_id', 'session_id', 'seq'], 'session_events_user_id_session_id_seq_key: UNIQUE (user_id, session_id, seq)');
SELECT has_pk('keen', 'session_events', 'keen.session_events has a primary key');
SELECT col_is_pk('keen', 'session_events', ARRAY['user_id', 'id'], 'session_events_pkey: PRIMARY KEY (user_id, id)');
-- foreign keys (the composite ones carry user_id: no cross-tenant reference)
SELECT fk_ok('keen', 'session_events', ARRAY['user_id', 'session_id'], 'keen', 'agent_sessions', ARRAY['user_id', 'id'],
  'session_events_session_fkey: (user_id, session_id) references keen.agent_sessions (user_id, id)');
SELECT set_eq(
  $$SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'keen.session_events'::regclass AND contype = 'f'$$,
  $$VALUES
    ('session_events_session_fkey', 'FOREIGN KEY (user_id, session_id) REFERENCES keen.agent_sessions(user_id, id) ON DELETE CASCADE')$$,
  'keen.session_events has exactly its foreign keys, with their ON DELETE actions');
-- check constraints
SELECT has_check('keen', 'session_events', 'keen.session_events has CHECK constraints');
SELECT set_eq(
  $$SELECT conname::text FROM pg_constraint WHERE conrelid = 'keen.session_events'::regclass AND contype = 'c'$$,
  ARRAY['session_events_event_type_check', 'session_events_seq_check'],
  'keen.session_events has exactly its named CHECK constraints');
-- indexes
SELECT indexes_are('keen', 'session_events', ARRAY[
    'session_events_created_at_idx', 'session_events_pkey',
    'session_events_user_id_session_id_id_idx', 'session_events_user_id_session_id_seq_key'],
  'keen.session_events has exactly the expected indexes');
SELECT is((SELECT pg_get_indexdef('keen.session_events_created_at_idx'::regclass)),
  'CREATE INDEX session_events_created_at_idx ON keen.session_events USING btree (created_at)',
  'session_events_created_at_idx: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.session_events_user_id_session_id_id_idx'::regclass)),
  'CREATE INDEX session_events_user_id_session_id_id_idx ON keen.session_events USING btree (user_id, session_id, id)',
  'session_events_user_id_session_id_id_idx: its columns, order, uniqueness and predicate');
SELECT hasnt_index('keen', 'session_events', 'session_events_user_id_id_idx',
  'no index on (user_id, id) beside the primary key');

-- ===== keen.websocket_connections =================================================
SELECT has_table('keen', 'websocket_connections', 'keen.websocket_connections exists');
SELECT table_owner_is('keen', 'websocket_connections', 'keen_owner', 'keen_owner owns keen.websocket_connections');
SELECT columns_are('keen', 'websocket_connections', ARRAY[
    'id', 'user_id', 'session_id', 'connection_id', 'client_ip', 'user_agent',
    'client_type', 'connected_at', 'last_ping_at', 'disconnected_at', 'subscribed_events',
    'session_filters', 'connection_status', 'created_at', 'updated_at'],
  'keen.websocket_connections has exactly the expected columns');
SELECT col_type_is('keen', 'websocket_connections', 'id', 'uuid', 'websocket_connections.id is uuid');
SELECT col_not_null('keen', 'websocket_connections', 'id', 'websocket_connections.id is NOT NULL');
SELECT col_default_is('keen', 'websocket_connections', 'id', 'gen_random_uuid()', 'websocket_connections.id defaults to gen_random_uuid()');
SELECT col_type_is('keen', 'websocket_connections', 'user_id', 'uuid', 'websocket_connections.user_id is uuid');
SELECT col_not_null('keen', 'websocket_connections', 'user_id', 'websocket_connections.user_id is NOT NULL');
SELECT col_hasnt_default('keen', 'websocket_connections', 'user_id', 'websocket_connections.user_id has no default');
SELECT col_type_is('keen', 'websocket_connections', 'session_id', 'uuid', 'websocket_connections.session_id is uuid');
SELECT col_is_null('keen', 'websocket_connections', 'session_id', 'websocket_connections.session_id is nullable');
SELECT col_hasnt_default('keen', 'websocket_connections', 'session_id', 'websocket_connections.session_id has no default');
SELECT col_type_is('keen', 'websocket_connections', 'connection_id', 'text', 'websocket_connections.connection_id is text');
SELECT col_not_null('keen', 'websocket_connections', 'connection_id', 'websocket_connections.connection_id is NOT NULL');
SELECT col_hasnt_default('keen', 'websocket_connections', 'connection_id', 'websocket_connections.connection_id has no default');
SELECT col_type_is('keen', 'websocket_connections', 'client_ip', 'inet', 'websocket_connections.client_ip is inet');
SELECT col_not_null('keen', 'websocket_connections', 'client_ip', 'websocket_connections.client_ip is NOT NULL');
SELECT col_hasnt_default('keen', 'websocket_connections', 'client_ip', 'websocket_connections.client_ip has no default');
SELECT col_type_is('keen', 'websocket_connections', 'user_agent', 'text', 'websocket_connections.user_agent is text');
SELECT col_is_null('keen', 'websocket_connections', 'user_agent', 'websocket_connections.user_agent is nullable');
SELECT col_hasnt_default('keen', 'websocket_connections', 'user_agent', 'websocket_connections.user_agent has no default');
SELECT col_type_is('keen', 'websocket_connections', 'client_type', 'text', 'websocket_connections.client_type is text');
SELECT col_not_null('keen', 'websocket_connections', 'client_type', 'websocket_connections.client_type is NOT NULL');
SELECT col_hasnt_default('keen', 'websocket_connections', 'client_type', 'websocket_connections.client_type has no default');
SELECT col_type_is('keen', 'websocket_connections', 'connected_at', 'timestamp with time zone', 'websocket_connections.connected_at is timestamp with time zone');
SELECT col_not_null('keen', 'websocket_connections', 'connected_at', 'websocket_connections.connected_at is NOT NULL');
SELECT col_default_is('keen', 'websocket_connections', 'connected_at', 'now()', 'websocket_connections.connected_at defaults to now()');
SELECT col_type_is('keen', 'websocket_connections', 'last_ping_at', 'timestamp with time zone', 'websocket_connections.last_ping_at is timestamp with time zone');
SELECT col_not_null('keen', 'websocket_connections', 'last_ping_at', 'websocket_connections.last_ping_at is NOT NULL');
SELECT col_default_is('keen', 'websocket_connections', 'last_ping_at', 'now()', 'websocket_connections.last_ping_at defaults to now()');
SELECT col_type_is('keen', 'websocket_connections', 'disconnected_at', 'timestamp with time zone', 'websocket_connections.disconnected_at is timestamp with time zone');
SELECT col_is_null('keen', 'websocket_connections', 'disconnected_at', 'websocket_connections.disconnected_at is nullable');
SELECT col_hasnt_default('keen', 'websocket_connections', 'disconnected_at', 'websocket_connections.disconnected_at has no default');
SELECT col_type_is('keen', 'websocket_connections', 'subscribed_events', 'text[]', 'websocket_connections.subscribed_events is text[]');
SELECT col_not_null('keen', 'websocket_connections', 'subscribed_events', 'websocket_connections.subscribed_events is NOT NULL');
SELECT col_default_is('keen', 'websocket_connections', 'subscribed_events', '{}', 'websocket_connections.subscribed_events defaults to {}');
SELECT col_type_is('keen', 'websocket_connections', 'session_filters', 'uuid[]', 'websocket_connections.session_filters is uuid[]');
SELECT col_is_null('keen', 'websocket_connections', 'session_filters', 'websocket_connections.session_filters is nullable');
SELECT col_hasnt_default('keen', 'websocket_connections', 'session_filters', 'websocket_connections.session_filters has no default');
SELECT col_type_is('keen', 'websocket_connections', 'connection_status', 'text', 'websocket_connections.connection_status is text');
SELECT col_not_null('keen', 'websocket_connections', 'connection_status', 'websocket_connections.connection_status is NOT NULL');
SELECT col_default_is('keen', 'websocket_connections', 'connection_status', 'active', 'websocket_connections.connection_status defaults to active');
SELECT col_type_is('keen', 'websocket_connections', 'created_at', 'timestamp with time zone', 'websocket_connections.created_at is timestamp with time zone');
SELECT col_not_null('keen', 'websocket_connections', 'created_at', 'websocket_connections.created_at is NOT NULL');
SELECT col_default_is('keen', 'websocket_connections', 'created_at', 'now()', 'websocket_connections.created_at defaults to now()');
SELECT col_type_is('keen', 'websocket_connections', 'updated_at', 'timestamp with time zone', 'websocket_connections.updated_at is timestamp with time zone');
SELECT col_not_null('keen', 'websocket_connections', 'updated_at', 'websocket_connections.updated_at is NOT NULL');
SELECT col_default_is('keen', 'websocket_connections', 'updated_at', 'now()', 'websocket_connections.updated_at defaults to now()');
-- keys
SELECT col_is_unique('keen', 'websocket_connections', ARRAY['user_id', 'connection_id'], 'websocket_connections_user_id_connection_id_key: UNIQUE (user_id, connection_id)');
SELECT hasnt_index('keen', 'websocket_connections', 'no UNIQUE (user_id, id) beside the primary key');
SELECT has_pk('keen', 'websocket_connections', 'keen.websocket_connections has a primary key');
SELECT col_is_pk('keen', 'websocket_connections', ARRAY['user_id', 'id'], 'websocket_connections_pkey: PRIMARY KEY (user_id, id)');
-- foreign keys (the composite ones carry user_id: no cross-tenant reference)
SELECT fk_ok('keen', 'websocket_connections', ARRAY['user_id', 'session_id'], 'keen', 'agent_sessions', ARRAY['user_id', 'id'],
  'websocket_connections_session_fkey: (user_id, session_id) references keen.agent_sessions (user_id, id)');
SELECT fk_ok('keen', 'websocket_connections', ARRAY['user_id'], 'keen', 'users', ARRAY['id'],
  'websocket_connections_user_id_fkey: (user_id) references keen.users (id)');
SELECT set_eq(
  $$SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'keen.websocket_connections'::regclass AND contype = 'f'$$,
  $$VALUES
    ('websocket_connections_session_fkey', 'FOREIGN KEY (user_id, session_id) REFERENCES keen.agent_sessions(user_id, id) ON DELETE RESTRICT'),
    ('websocket_connections_user_id_fkey', 'FOREIGN KEY (user_id) REFERENCES keen.users(id) ON DELETE CASCADE')$$,
  'keen.websocket_connections has exactly its foreign keys, with their ON DELETE actions');
-- check constraints
SELECT has_check('keen', 'websocket_connections', 'keen.websocket_connections has CHECK constraints');
SELECT set_eq(
  $$SELECT conname::text FROM pg_constraint WHERE conrelid = 'keen.websocket_connections'::regclass AND contype = 'c'$$,
  ARRAY[
    'websocket_connections_client_type_check', 'websocket_connections_connection_id_check',
    'websocket_connections_connection_status_check',
    'websocket_connections_disconnected_at_check'],
  'keen.websocket_connections has exactly its named CHECK constraints');
-- indexes
SELECT indexes_are('keen', 'websocket_connections', ARRAY[
    'websocket_connections_active_last_ping_at_idx', 'websocket_connections_pkey',
    'websocket_connections_user_id_session_id_idx',
    'websocket_connections_user_id_connection_id_key'],
  'keen.websocket_connections has exactly the expected indexes');
SELECT is((SELECT pg_get_indexdef('keen.websocket_connections_active_last_ping_at_idx'::regclass)),
  'CREATE INDEX websocket_connections_active_last_ping_at_idx ON keen.websocket_connections USING btree (last_ping_at) WHERE (connection_status = ''active''::text)',
  'websocket_connections_active_last_ping_at_idx: its columns, order, uniqueness and predicate');
SELECT is((SELECT pg_get_indexdef('keen.websocket_connections_user_id_session_id_idx'::regclass)),
  'CREATE INDEX websocket_connections_user_id_session_id_idx ON keen.websocket_connections USING btree (user_id, session_id) WHERE (session_id IS NOT NULL)',
  'websocket_connections_user_id_session_id_idx: its columns, order, uniqueness and predicate');

-- ===== keen.session_limits ========================================================
SELECT has_table('keen', 'session_limits', 'keen.session_limits exists');
SELECT table_owner_is('keen', 'session_limits', 'keen_owner', 'keen_owner owns keen.session_limits');
SELECT columns_are('keen', 'session_limits', ARRAY['singleton', 'max_depth', 'max_children', 'updated_at', 'budget_chunk'],
  'keen.session_limits has exactly the expected columns');
SELECT col_type_is('keen', 'session_limits', 'singleton', 'boolean', 'session_limits.singleton is boolean');
SELECT col_not_null('keen', 'session_limits', 'singleton', 'session_limits.singleton is NOT NULL');
SELECT col_default_is('keen', 'session_limits', 'singleton', 'true', 'session_limits.singleton defaults to true');
SELECT col_type_is('keen', 'session_limits', 'max_depth', 'integer', 'session_limits.max_depth is integer');
SELECT col_is_null('keen', 'session_limits', 'max_depth', 'session_limits.max_depth is nullable');
SELECT col_hasnt_default('keen', 'session_limits', 'max_depth', 'session_limits.max_depth has no default');
SELECT col_type_is('keen', 'session_limits', 'max_children', 'integer', 'session_limits.max_children is integer');
SELECT col_is_null('keen', 'session_limits', 'max_children', 'session_limits.max_children is nullable');
SELECT col_hasnt_default('keen', 'session_limits', 'max_children', 'session_limits.max_children has no default');
SELECT col_type_is('keen', 'session_limits', 'updated_at', 'timestamp with time zone', 'session_limits.updated_at is timestamp with time zone');
SELECT col_not_null('keen', 'session_limits', 'updated_at', 'session_limits.updated_at is NOT NULL');
SELECT col_default_is('keen', 'session_limits', 'updated_at', 'now()', 'session_limits.updated_at defaults to now()');
SELECT col_type_is('keen', 'session_limits', 'budget_chunk', 'numeric(12,4)', 'session_limits.budget_chunk is numeric(12,4)');
SELECT col_not_null('keen', 'session_limits', 'budget_chunk', 'session_limits.budget_chunk is NOT NULL');
SELECT col_default_is('keen', 'session_limits', 'budget_chunk', '1', 'session_limits.budget_chunk defaults to 1');
-- keys
SELECT has_pk('keen', 'session_limits', 'keen.session_limits has a primary key');
SELECT col_is_pk('keen', 'session_limits', ARRAY['singleton'], 'session_limits_pkey: PRIMARY KEY (singleton)');
-- check constraints
SELECT has_check('keen', 'session_limits', 'keen.session_limits has CHECK constraints');
SELECT set_eq(
  $$SELECT conname::text FROM pg_constraint WHERE conrelid = 'keen.session_limits'::regclass AND contype = 'c'$$,
  ARRAY[
    'session_limits_budget_chunk_check', 'session_limits_max_children_check', 'session_limits_max_depth_check',
    'session_limits_singleton_check'],
  'keen.session_limits has exactly its named CHECK constraints');
-- indexes
SELECT indexes_are('keen', 'session_limits', ARRAY['session_limits_pkey'],
  'keen.session_limits has exactly the expected indexes');

SELECT * FROM finish();
ROLLBACK;
