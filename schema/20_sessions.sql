-- Agent sessions (recursive trees), their durable event log, and WebSocket connections.
SET ROLE keen_owner;

-- ===== tables ================================================================
CREATE TABLE keen.agent_sessions (
  id                     uuid          NOT NULL DEFAULT gen_random_uuid(),
  user_id                uuid          NOT NULL,
  session_id             text          NOT NULL,
  parent_session_id      uuid,
  session_depth          integer       NOT NULL DEFAULT 0,
  git_branch             text          NOT NULL,
  vision                 text          NOT NULL,
  working_directory      text          NOT NULL,
  current_phase          text          NOT NULL DEFAULT 'EXPLORE',
  start_time             timestamptz   NOT NULL DEFAULT now(),
  end_time               timestamptz,
  last_activity_at       timestamptz   NOT NULL DEFAULT now(),
  phase_started_at       timestamptz   NOT NULL DEFAULT now(),
  iteration_count        integer       NOT NULL DEFAULT 0,
  tool_calls_count       integer       NOT NULL DEFAULT 0,
  total_cost             numeric(14,6) NOT NULL DEFAULT 0,
  tokens_used            bigint        NOT NULL DEFAULT 0,
  context_window_size    integer       NOT NULL DEFAULT 1000000,
  files_modified         text[]        NOT NULL DEFAULT '{}',
  files_created          text[]        NOT NULL DEFAULT '{}',
  files_deleted          text[]        NOT NULL DEFAULT '{}',
  execution_status       text          NOT NULL DEFAULT 'running',
  success                boolean       GENERATED ALWAYS AS (
                           CASE execution_status WHEN 'completed' THEN true
                                                 WHEN 'failed' THEN false END) STORED,
  error_message          text,
  completion_report      jsonb,
  streaming_enabled      boolean       NOT NULL DEFAULT true,
  streaming_time         integer,
  websocket_connections  text[]        NOT NULL DEFAULT '{}',
  agent_options          jsonb         NOT NULL DEFAULT '{}',
  -- Last event number of this session's log (session_events.seq), bumped under its row lock.
  last_event_seq         bigint        NOT NULL DEFAULT 0,
  created_at             timestamptz   NOT NULL DEFAULT now(),
  updated_at             timestamptz   NOT NULL DEFAULT now(),
  CONSTRAINT agent_sessions_pkey PRIMARY KEY (id),
  CONSTRAINT agent_sessions_user_id_id_key UNIQUE (user_id, id),
  -- The external id is chosen by the caller: unique per tenant only, so it reveals nothing.
  CONSTRAINT agent_sessions_user_id_session_id_key UNIQUE (user_id, session_id),
  CONSTRAINT agent_sessions_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  -- A parent must belong to the same tenant: the key carries user_id.
  CONSTRAINT agent_sessions_parent_fkey FOREIGN KEY (user_id, parent_session_id)
    REFERENCES keen.agent_sessions (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT agent_sessions_session_id_check CHECK (length(session_id) BETWEEN 1 AND 128),
  CONSTRAINT agent_sessions_session_depth_check CHECK (session_depth >= 0),
  CONSTRAINT agent_sessions_root_check CHECK ((parent_session_id IS NULL) = (session_depth = 0)),
  CONSTRAINT agent_sessions_parent_check CHECK (parent_session_id <> id),
  CONSTRAINT agent_sessions_current_phase_check
    CHECK (current_phase IN ('EXPLORE', 'PLAN', 'SUMMON', 'COMPLETE')),
  CONSTRAINT agent_sessions_execution_status_check
    CHECK (execution_status IN ('running', 'completed', 'failed', 'cancelled')),
  CONSTRAINT agent_sessions_end_time_check
    CHECK ((execution_status = 'running') = (end_time IS NULL) AND (end_time IS NULL OR end_time >= start_time)),
  CONSTRAINT agent_sessions_counters_check
    CHECK (iteration_count >= 0 AND tool_calls_count >= 0 AND tokens_used >= 0 AND total_cost >= 0),
  CONSTRAINT agent_sessions_context_window_size_check CHECK (context_window_size > 0),
  CONSTRAINT agent_sessions_streaming_time_check CHECK (streaming_time IS NULL OR streaming_time >= 0),
  CONSTRAINT agent_sessions_last_event_seq_check CHECK (last_event_seq >= 0)
);

CREATE TABLE keen.session_events (
  id          bigint      NOT NULL GENERATED ALWAYS AS IDENTITY,
  user_id     uuid        NOT NULL,
  session_id  uuid        NOT NULL,
  seq         bigint      NOT NULL,
  event_type  text        NOT NULL,
  payload     jsonb       NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT session_events_pkey PRIMARY KEY (id),
  CONSTRAINT session_events_session_id_seq_key UNIQUE (session_id, seq),
  CONSTRAINT session_events_session_fkey FOREIGN KEY (user_id, session_id)
    REFERENCES keen.agent_sessions (user_id, id) ON DELETE CASCADE,
  CONSTRAINT session_events_seq_check CHECK (seq > 0),
  CONSTRAINT session_events_event_type_check CHECK (event_type ~ '^[a-z][a-z_.]{0,62}$')
);

CREATE TABLE keen.websocket_connections (
  id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
  user_id            uuid        NOT NULL,
  session_id         uuid,
  connection_id      text        NOT NULL,
  client_ip          inet        NOT NULL,
  user_agent         text,
  client_type        text        NOT NULL,
  connected_at       timestamptz NOT NULL DEFAULT now(),
  last_ping_at       timestamptz NOT NULL DEFAULT now(),
  disconnected_at    timestamptz,
  subscribed_events  text[]      NOT NULL DEFAULT '{}',
  session_filters    uuid[],
  connection_status  text        NOT NULL DEFAULT 'active',
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT websocket_connections_pkey PRIMARY KEY (id),
  CONSTRAINT websocket_connections_user_id_id_key UNIQUE (user_id, id),
  CONSTRAINT websocket_connections_user_id_connection_id_key UNIQUE (user_id, connection_id),
  CONSTRAINT websocket_connections_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  CONSTRAINT websocket_connections_session_fkey FOREIGN KEY (user_id, session_id)
    REFERENCES keen.agent_sessions (user_id, id) ON DELETE SET NULL (session_id),
  CONSTRAINT websocket_connections_connection_id_check CHECK (length(connection_id) BETWEEN 1 AND 255),
  CONSTRAINT websocket_connections_client_type_check CHECK (client_type IN ('web', 'cli', 'ide', 'api')),
  CONSTRAINT websocket_connections_connection_status_check
    CHECK (connection_status IN ('active', 'closed', 'stale')),
  CONSTRAINT websocket_connections_disconnected_at_check
    CHECK ((connection_status = 'active') = (disconnected_at IS NULL))
);

-- ===== indexes ===============================================================
CREATE INDEX agent_sessions_user_id_start_time_idx ON keen.agent_sessions (user_id, start_time DESC, id DESC);
CREATE INDEX agent_sessions_user_id_status_start_time_idx
  ON keen.agent_sessions (user_id, execution_status, start_time DESC, id DESC);
CREATE INDEX agent_sessions_parent_session_id_idx ON keen.agent_sessions (parent_session_id)
  WHERE parent_session_id IS NOT NULL;
CREATE INDEX session_events_user_id_id_idx ON keen.session_events (user_id, id);
CREATE INDEX session_events_created_at_idx ON keen.session_events (created_at);
CREATE INDEX websocket_connections_session_id_idx ON keen.websocket_connections (session_id)
  WHERE session_id IS NOT NULL;
CREATE INDEX websocket_connections_active_last_ping_at_idx ON keen.websocket_connections (last_ping_at)
  WHERE connection_status = 'active';

-- ===== triggers ==============================================================
CREATE TRIGGER _100_set_updated_at BEFORE UPDATE ON keen.agent_sessions
  FOR EACH ROW EXECUTE FUNCTION keen.tg_set_updated_at();
CREATE TRIGGER _100_set_updated_at BEFORE UPDATE ON keen.websocket_connections
  FOR EACH ROW EXECUTE FUNCTION keen.tg_set_updated_at();

-- ===== row-level security ====================================================
ALTER TABLE keen.agent_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.agent_sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE keen.session_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.session_events FORCE ROW LEVEL SECURITY;
ALTER TABLE keen.websocket_connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.websocket_connections FORCE ROW LEVEL SECURITY;
-- Tenants see and write only their own rows; the owner policy serves the
-- cross-tenant SECURITY DEFINER functions and the dashboard refresh.
CREATE POLICY select_own ON keen.agent_sessions FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY insert_own ON keen.agent_sessions FOR INSERT TO keen_app
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY update_own ON keen.agent_sessions FOR UPDATE TO keen_app
  USING (user_id = (SELECT keen.current_user_id()))
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.agent_sessions FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.session_events FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY insert_own ON keen.session_events FOR INSERT TO keen_app
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.session_events FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.websocket_connections FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY insert_own ON keen.websocket_connections FOR INSERT TO keen_app
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY update_own ON keen.websocket_connections FOR UPDATE TO keen_app
  USING (user_id = (SELECT keen.current_user_id()))
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.websocket_connections FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== grants ================================================================
GRANT SELECT, INSERT, UPDATE ON keen.agent_sessions TO keen_app;
GRANT SELECT, INSERT ON keen.session_events TO keen_app;
GRANT SELECT, INSERT, UPDATE ON keen.websocket_connections TO keen_app;

-- ===== comments ==============================================================
COMMENT ON TABLE keen.agent_sessions IS 'One agent run; child sessions form a tree per task.';
COMMENT ON COLUMN keen.agent_sessions.session_id IS 'External, caller-chosen id; unique per tenant.';
COMMENT ON COLUMN keen.agent_sessions.parent_session_id IS 'The parent session (same tenant, by composite key); NULL for a root.';
COMMENT ON COLUMN keen.agent_sessions.session_depth IS '0 for a root, parent''s depth + 1 otherwise.';
COMMENT ON COLUMN keen.agent_sessions.total_cost IS 'Cost in credits with 6 decimals; charged to the 4-decimal ledger on completion.';
COMMENT ON COLUMN keen.agent_sessions.success IS 'Derived from execution_status, so the two can never disagree.';
COMMENT ON COLUMN keen.agent_sessions.websocket_connections IS 'connection_id of the active connections following this session.';
COMMENT ON COLUMN keen.agent_sessions.last_event_seq IS 'Number of the last event in this session''s log.';
COMMENT ON TABLE keen.session_events IS 'Durable per-session event log; NOTIFY keen_events announces each row.';
COMMENT ON COLUMN keen.session_events.seq IS 'Event number within its session: 1, 2, 3… without gaps.';
COMMENT ON TABLE keen.websocket_connections IS 'Live WebSocket/CLI/IDE connections following a user''s sessions.';
COMMENT ON COLUMN keen.websocket_connections.connection_id IS 'The WebSocket server''s id of the connection; unique per tenant.';

RESET ROLE;
