-- Agent sessions: lifecycle, trees, listing, the event stream's replay and live connections
-- (tenant, inside db.tenant(user_id)); the connection reaper and event retention run as the
-- WebSocket server's housekeeping login or an operator, never as keen_app.

-- name: CancelSession :one
-- Cancels a running session and all its running descendants; a cancelled one comes back unchanged.
SELECT * FROM keen.cancel_session(p_session_id => sqlc.arg(session_id)::text);

-- name: CloseConnection :one
-- Closes a connection (idempotent) and takes it off its session's list.
SELECT * FROM keen.close_connection(p_connection_id => sqlc.arg(connection_id)::text);

-- name: CompleteSession :one
-- Ends a running session as completed or failed and charges its cost in the same transaction.
SELECT * FROM keen.complete_session(
  p_session_id => sqlc.arg(session_id)::text,
  p_success => sqlc.arg(success)::boolean,
  p_total_cost => sqlc.narg(total_cost)::numeric,
  p_files_created => sqlc.narg(files_created)::text[],
  p_files_modified => sqlc.narg(files_modified)::text[],
  p_files_deleted => sqlc.narg(files_deleted)::text[],
  p_completion_report => sqlc.narg(completion_report)::jsonb,
  p_error_message => sqlc.narg(error_message)::text
);

-- name: EndIdleTransactions :one
-- Operators: ends the service logins' transactions left idle for longer than idle; returns how many.
SELECT keen.end_idle_transactions(p_idle => sqlc.arg(idle)::interval) AS ended;

-- name: GetSession :one
-- The caller's session with this external id (KE006 when there is none).
SELECT * FROM keen.get_session(p_session_id => sqlc.arg(session_id)::text);

-- name: ListSessionEvents :many
-- Replays the caller's events (or one session's) with an id above after_id, in order.
SELECT * FROM keen.list_session_events(
  p_after_id => sqlc.narg(after_id)::bigint,
  p_session_id => sqlc.narg(session_id)::text,
  p_limit => sqlc.narg('limit')::integer
);

-- name: ListSessions :many
-- The caller's sessions newest first, optionally of one status; pass the last row's start_time and id for the next page.
SELECT * FROM keen.list_sessions(
  p_status => sqlc.narg(status)::text,
  p_before_start_time => sqlc.narg(before_start_time)::timestamptz,
  p_before_id => sqlc.narg(before_id)::uuid,
  p_limit => sqlc.narg('limit')::integer
);

-- name: OpenConnection :one
-- Records a live connection, optionally following a session, with its event and session filters.
SELECT * FROM keen.open_connection(
  p_connection_id => sqlc.arg(connection_id)::text,
  p_client_ip => sqlc.arg(client_ip)::inet,
  p_user_agent => sqlc.narg(user_agent)::text,
  p_client_type => sqlc.narg(client_type)::text,
  p_session_id => sqlc.narg(session_id)::text,
  p_subscribed_events => sqlc.narg(subscribed_events)::text[],
  p_session_filters => sqlc.narg(session_filters)::text[]
);

-- name: PingConnection :one
-- Marks an active connection alive now (KE007 once closed or reaped).
SELECT * FROM keen.ping_connection(p_connection_id => sqlc.arg(connection_id)::text);

-- name: PruneSessionEvents :one
-- Operators: deletes the events older than older_than; returns how many.
SELECT keen.prune_session_events(p_older_than => sqlc.arg(older_than)::interval) AS pruned;

-- name: ReapStaleConnections :one
-- Housekeeping login: marks every tenant's connections silent for longer than idle stale; returns how many.
SELECT keen.reap_stale_connections(p_idle => sqlc.arg(idle)::interval) AS reaped;

-- name: SessionTree :many
-- The session and all its descendants with depth and path, depth-first in start order.
-- @not-null: *
-- @nullable: parent_session_id
SELECT t.id, t.session_id, t.parent_session_id, t.depth, t.path, t.current_phase,
       t.execution_status, t.total_cost, t.tokens_used
FROM keen.session_tree(p_session_id => sqlc.arg(session_id)::text) AS t;

-- name: StartSession :one
-- Starts a session of the caller, optionally the child of one of the caller's running sessions.
SELECT * FROM keen.start_session(
  p_session_id => sqlc.arg(session_id)::text,
  p_vision => sqlc.arg(vision)::text,
  p_working_directory => sqlc.arg(working_directory)::text,
  p_git_branch => sqlc.arg(git_branch)::text,
  p_parent_session_id => sqlc.narg(parent_session_id)::text
);

-- name: UpdateSessionProgress :one
-- Adds increments to a running session's counters and cost and moves its phase forward.
SELECT * FROM keen.update_session_progress(
  p_session_id => sqlc.arg(session_id)::text,
  p_phase => sqlc.narg(phase)::text,
  p_iterations => sqlc.narg(iterations)::integer,
  p_tool_calls => sqlc.narg(tool_calls)::integer,
  p_tokens => sqlc.narg(tokens)::bigint,
  p_cost => sqlc.narg(cost)::numeric
);
