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
  -- Start order: drawn when the session is started, so siblings started in one transaction
  -- (one start_time) still sort in the order they were started.
  start_seq              bigint        NOT NULL GENERATED ALWAYS AS IDENTITY,
  -- The credit hold reserving the session's accepted cost (credit_holds.id); NULL until the
  -- first report with a cost.
  hold_id                uuid,
  CONSTRAINT agent_sessions_pkey PRIMARY KEY (user_id, id),
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
  -- numeric 'NaN' passes `>= 0`: a cost that is charged to the ledger refuses it.
  CONSTRAINT agent_sessions_counters_check
    CHECK (iteration_count >= 0 AND tool_calls_count >= 0 AND tokens_used >= 0 AND total_cost >= 0
           AND total_cost <> 'NaN'),
  CONSTRAINT agent_sessions_context_window_size_check CHECK (context_window_size > 0),
  CONSTRAINT agent_sessions_streaming_time_check CHECK (streaming_time IS NULL OR streaming_time >= 0),
  CONSTRAINT agent_sessions_last_event_seq_check CHECK (last_event_seq >= 0)
);

CREATE TABLE keen.session_events (
  -- The inserting transaction's id * 2^20 + its event number (keen.append_session_event).
  id          bigint      NOT NULL,
  user_id     uuid        NOT NULL,
  session_id  uuid        NOT NULL,
  seq         bigint      NOT NULL,
  event_type  text        NOT NULL,
  payload     jsonb       NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT session_events_pkey PRIMARY KEY (user_id, id),
  CONSTRAINT session_events_user_id_session_id_seq_key UNIQUE (user_id, session_id, seq),
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
  CONSTRAINT websocket_connections_pkey PRIMARY KEY (user_id, id),
  CONSTRAINT websocket_connections_user_id_connection_id_key UNIQUE (user_id, connection_id),
  CONSTRAINT websocket_connections_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  CONSTRAINT websocket_connections_session_fkey FOREIGN KEY (user_id, session_id)
    REFERENCES keen.agent_sessions (user_id, id) ON DELETE RESTRICT,
  CONSTRAINT websocket_connections_connection_id_check CHECK (length(connection_id) BETWEEN 1 AND 255),
  CONSTRAINT websocket_connections_client_type_check CHECK (client_type IN ('web', 'cli', 'ide', 'api')),
  CONSTRAINT websocket_connections_connection_status_check
    CHECK (connection_status IN ('active', 'closed', 'stale')),
  CONSTRAINT websocket_connections_disconnected_at_check
    CHECK ((connection_status = 'active') = (disconnected_at IS NULL))
);

-- Operator-set limits on session trees (one row; NULL means no limit).
CREATE TABLE keen.session_limits (
  singleton     boolean     NOT NULL DEFAULT true,
  max_depth     integer,
  max_children  integer,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  budget_chunk  numeric(12,4) NOT NULL DEFAULT 1,
  CONSTRAINT session_limits_pkey PRIMARY KEY (singleton),
  CONSTRAINT session_limits_singleton_check CHECK (singleton),
  CONSTRAINT session_limits_max_depth_check CHECK (max_depth IS NULL OR max_depth >= 0),
  CONSTRAINT session_limits_max_children_check CHECK (max_children IS NULL OR max_children >= 0),
  CONSTRAINT session_limits_budget_chunk_check CHECK (budget_chunk > 0 AND budget_chunk < 100000000)
);
INSERT INTO keen.session_limits (max_depth, max_children) VALUES (32, 1000);

-- ===== indexes ===============================================================
CREATE INDEX agent_sessions_user_id_start_time_idx ON keen.agent_sessions (user_id, start_time DESC, id DESC);
CREATE INDEX agent_sessions_user_id_status_start_time_idx
  ON keen.agent_sessions (user_id, execution_status, start_time DESC, id DESC);
CREATE INDEX agent_sessions_user_id_parent_session_id_idx ON keen.agent_sessions (user_id, parent_session_id)
  WHERE parent_session_id IS NOT NULL;
-- A session's stream resumes "after event id N" (ids follow seq within a session).
CREATE INDEX session_events_user_id_session_id_id_idx ON keen.session_events (user_id, session_id, id);
CREATE INDEX session_events_created_at_idx ON keen.session_events (created_at);
CREATE INDEX websocket_connections_user_id_session_id_idx ON keen.websocket_connections (user_id, session_id)
  WHERE session_id IS NOT NULL;
CREATE INDEX websocket_connections_active_last_ping_at_idx ON keen.websocket_connections (last_ping_at)
  WHERE connection_status = 'active';

-- ===== functions =============================================================
CREATE FUNCTION keen.session_phase_rank(p_phase text)
RETURNS integer
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_catalog.array_position(ARRAY['EXPLORE', 'PLAN', 'SUMMON', 'COMPLETE']::text[], p_phase)
$$;

CREATE FUNCTION keen.get_session(p_session_id text)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_session keen.agent_sessions;
BEGIN
  PERFORM keen.check_text(p_session_id, 'session id', 128);
  SELECT s.* INTO v_session
    FROM keen.agent_sessions AS s
   WHERE s.user_id = v_user_id AND s.session_id = p_session_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: session %', coalesce(pg_catalog.quote_literal(p_session_id), 'NULL')
      USING ERRCODE = 'KE006';
  END IF;
  RETURN v_session;
END
$$;

CREATE FUNCTION keen.get_session_by_id(p_id uuid)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_session keen.agent_sessions;
BEGIN
  -- Events name their session by uuid (session_events.session_id): this names it back.
  SELECT s.* INTO v_session
    FROM keen.agent_sessions AS s
   WHERE s.user_id = v_user_id AND s.id = p_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: session %', coalesce(p_id::text, 'NULL') USING ERRCODE = 'KE006';
  END IF;
  RETURN v_session;
END
$$;

CREATE FUNCTION keen.session_uuid(p_session_id text)
RETURNS uuid
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (keen.get_session(p_session_id)).id
$$;

CREATE FUNCTION keen.lock_session(p_session_id text)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  -- KE006 for an unknown session (keen.get_session); the tenant and the id by value, so
  -- the lock goes to the tenant's one shard.
  v_id uuid := keen.session_uuid(p_session_id);
  v_session keen.agent_sessions;
BEGIN
  -- NO KEY UPDATE is what the UPDATE that follows takes anyway; it lets foreign-key
  -- checks (events, ledger rows, children) through.
  SELECT s.* INTO v_session
    FROM keen.agent_sessions AS s
   WHERE s.user_id = v_user_id AND s.id = v_id
     FOR NO KEY UPDATE;
  RETURN v_session;
END
$$;

CREATE FUNCTION keen.append_session_event(p_session keen.agent_sessions, p_event_type text, p_payload jsonb)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- The id is drawn here, in the function, and goes into the INSERT by value: on Citus this
  -- body runs on the coordinator, so the id carries the COORDINATOR's transaction id (a
  -- column default or a trigger would run on the worker holding the shard, whose
  -- transaction ids are its own). Why that keeps "after id N" gapless on a cluster:
  --   * every event of a coordinator transaction X has an id in [X * 2^20, (X + 1) * 2^20);
  --   * keen.list_session_events delivers only ids below xmin(the reader's coordinator
  --     snapshot) * 2^20: every coordinator transaction that may still commit an event there
  --     has an xid >= that xmin, so its events are above the horizon until it has ended;
  --   * a transaction of one tenant writes to that tenant's one worker, and Citus commits a
  --     one-worker transaction on the worker first (COMMIT in its pre-commit step) and on the
  --     coordinator after: when the coordinator shows X ended, X's events are committed on the
  --     worker, and the reader's worker snapshot, taken after its coordinator snapshot, sees
  --     them. So an event below the horizon is final: visible now, never inserted later.
  --   (A transaction writing events on two workers would commit with two-phase commit, whose
  --   COMMIT PREPARED follows the coordinator's commit: one tenant per transaction, as the
  --   API's tenant context has it, never does.)
  v_id bigint := keen.next_session_event_id();
  v_previous bigint;
BEGIN
  -- p_session is the row as just updated under its lock: its last_event_seq is this event's
  -- number. A session's ids follow its seq: a transaction older than the one that wrote the
  -- previous event (it took the session's lock later) would number this one below it. Rare
  -- (one call per transaction never does it); retried like any serialization failure.
  IF p_session.last_event_seq > 1 THEN
    SELECT e.id INTO v_previous
      FROM keen.session_events AS e
     WHERE e.user_id = p_session.user_id AND e.session_id = p_session.id
       AND e.seq = p_session.last_event_seq - 1;
    IF v_previous > v_id THEN
      RAISE EXCEPTION 'could not serialize: session % has an event of a younger transaction; retry', p_session.id
        USING ERRCODE = '40001', HINT = 'Retry the whole transaction (keen_sql.retry does).';
    END IF;
  END IF;
  INSERT INTO keen.session_events (id, user_id, session_id, seq, event_type, payload, created_at)
  VALUES (v_id, p_session.user_id, p_session.id, p_session.last_event_seq, p_event_type, p_payload,
          pg_catalog.now());
  -- The wake-up, from the coordinator where the listeners are (a trigger would NOTIFY on the
  -- worker). An empty payload: every login that may connect can LISTEN, so the payload names
  -- no tenant, user, session or event; listeners read their own events through RLS after
  -- their cursor. Equal payloads fold into one per transaction.
  PERFORM pg_catalog.pg_notify('keen_events', '');
  RETURN v_id;
END
$$;

CREATE FUNCTION keen.start_session(
  p_session_id        text,
  p_vision            text,
  p_working_directory text,
  p_git_branch        text,
  p_parent_session_id text DEFAULT NULL
)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_user_status text;
  v_account_status text;
  v_parent keen.agent_sessions;
  v_max_depth integer;
  v_max_children integer;
  v_children bigint;
  v_session keen.agent_sessions;
BEGIN
  IF p_session_id IS NULL OR p_vision IS NULL OR p_working_directory IS NULL OR p_git_branch IS NULL THEN
    RAISE EXCEPTION 'invalid argument: session id, vision, working directory and git branch are required'
      USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_text(p_session_id, 'session id', 128);
  PERFORM keen.check_text(p_vision, 'vision', 65536);
  PERFORM keen.check_text(p_working_directory, 'working directory', 4096);
  PERFORM keen.check_text(p_git_branch, 'git branch', 255);
  -- A suspended or closed user or credit account starts nothing (and a context naming no
  -- user is no tenant: KE010, not a raw foreign-key error).
  SELECT u.account_status, a.account_status INTO v_user_status, v_account_status
    FROM keen.users AS u LEFT JOIN keen.credit_accounts AS a ON a.user_id = v_user_id
   WHERE u.user_id = v_user_id AND u.id = v_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no tenant context: user % does not exist', v_user_id USING ERRCODE = 'KE010';
  ELSIF v_user_status <> 'active' OR v_account_status IS DISTINCT FROM 'active' THEN
    RAISE EXCEPTION 'account not active: user %, credit account %', v_user_status, coalesce(v_account_status, 'missing')
      USING ERRCODE = 'KE012';
  END IF;
  -- No per-user lock: one user's sessions start, report and end in parallel (the event ids
  -- need none, see keen.append_session_event).

  IF p_parent_session_id IS NOT NULL THEN
    -- The parent's lock orders this start against its completion, cancellation and
    -- other children's starts, so "still running" and the children count hold at commit.
    v_parent := keen.lock_session(p_parent_session_id);
    IF v_parent.execution_status <> 'running' THEN
      RAISE EXCEPTION 'invalid state transition: parent session % is %, not running',
          pg_catalog.quote_literal(p_parent_session_id), v_parent.execution_status
        USING ERRCODE = 'KE007', HINT = 'Only a running session can start child sessions.';
    END IF;
    SELECT l.max_depth, l.max_children INTO v_max_depth, v_max_children FROM keen.session_limits AS l;
    IF v_parent.session_depth + 1 > v_max_depth THEN
      RAISE EXCEPTION 'hierarchy limit exceeded: a child of % would be at depth %, the maximum is %',
          pg_catalog.quote_literal(p_parent_session_id), v_parent.session_depth + 1, v_max_depth
        USING ERRCODE = 'KE008', DETAIL = 'max_depth',
              HINT = 'keen.session_limits.max_depth sets the limit (NULL: none).';
    END IF;
    IF v_max_children IS NOT NULL THEN
      SELECT pg_catalog.count(*) INTO v_children
        FROM keen.agent_sessions AS c
       WHERE c.user_id = v_user_id AND c.parent_session_id = v_parent.id;
      IF v_children >= v_max_children THEN
        RAISE EXCEPTION 'hierarchy limit exceeded: session % already has % children, the maximum is %',
            pg_catalog.quote_literal(p_parent_session_id), v_children, v_max_children
          USING ERRCODE = 'KE008', DETAIL = 'max_children',
                HINT = 'keen.session_limits.max_children sets the limit (NULL: none).';
      END IF;
    END IF;
  END IF;

  -- The row is created with its first event's number; depth = the locked parent's + 1 (the
  -- composite foreign key keeps the parent in the same tenant, and parents are immutable,
  -- so no cycle can form).
  INSERT INTO keen.agent_sessions AS s
         (user_id, session_id, parent_session_id, session_depth, git_branch, vision, working_directory,
          last_event_seq)
  VALUES (v_user_id, p_session_id, v_parent.id, coalesce(v_parent.session_depth + 1, 0), p_git_branch, p_vision,
          p_working_directory, 1)
  ON CONFLICT ON CONSTRAINT agent_sessions_user_id_session_id_key DO NOTHING
  RETURNING s.* INTO v_session;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'already exists: session %', pg_catalog.quote_literal(p_session_id)
      USING ERRCODE = 'KE009', DETAIL = 'agent_sessions_user_id_session_id_key';
  END IF;
  PERFORM keen.track_session_usage(NULL, v_session);

  PERFORM keen.append_session_event(v_session, 'session.started', pg_catalog.jsonb_build_object(
    'parent_session_id', v_session.parent_session_id,
    'session_depth', v_session.session_depth,
    'current_phase', v_session.current_phase));
  RETURN v_session;
END
$$;

CREATE FUNCTION keen.check_session_cost(p_cost numeric, p_what text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- numeric admits NaN and ±Infinity; costs are kept with 6 decimals.
  IF p_cost IS NULL OR p_cost IN ('NaN', 'Infinity', '-Infinity') OR p_cost < 0
     OR pg_catalog.scale(p_cost) > 6 OR p_cost >= 100000000 THEN
    RAISE EXCEPTION 'invalid amount: % %', p_what, coalesce(p_cost::text, 'NULL')
      USING ERRCODE = 'KE004',
            HINT = 'A cost is a finite number >= 0 below 100000000 with at most 6 decimal places.';
  END IF;
END
$$;

CREATE FUNCTION keen.add_session_budget(p_session keen.agent_sessions, p_hold_id uuid, p_amount numeric)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Onto the session's active hold, or a new hold tied to the session (7 days, the longest
  -- a hold may run; a report after that places a new one).
  IF p_hold_id IS NOT NULL THEN
    PERFORM keen.extend_hold(p_user_id => p_session.user_id, p_hold_id => p_hold_id, p_amount => p_amount);
  ELSE
    PERFORM keen.hold_credits(p_session_id => p_session.id, p_amount => p_amount, p_expires_in => interval '7 days');
  END IF;
END
$$;

CREATE FUNCTION keen.reserve_session_budget(p_session keen.agent_sessions, p_needed numeric, p_chunked boolean)
RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_hold_id uuid := p_session.hold_id;
  v_held numeric;
  v_short numeric;
  v_chunk numeric;
BEGIN
  -- The session's hold must cover p_needed (its accepted cost, at the ledger's 4 places).
  -- The common case reads the hold by key and touches no account row.
  SELECT h.amount INTO v_held FROM keen.credit_holds AS h
   WHERE h.user_id = p_session.user_id AND h.id = v_hold_id
     AND h.status = 'active' AND h.expires_at > pg_catalog.now();
  IF v_held >= p_needed THEN
    RETURN v_hold_id;
  END IF;
  IF v_held IS NULL THEN
    -- No hold of its own yet (or it expired): one the caller placed for the session counts.
    SELECT h.id, h.amount INTO v_hold_id, v_held FROM keen.credit_holds AS h
     WHERE h.user_id = p_session.user_id AND h.session_id = p_session.id
       AND h.status = 'active' AND h.expires_at > pg_catalog.now()
     ORDER BY h.amount DESC, h.id
     LIMIT 1;
    IF v_held >= p_needed THEN
      RETURN v_hold_id;
    END IF;
  END IF;
  -- Short: reserve more under the account lock, a chunk at a time (keen.session_limits), so
  -- most reports never reach the account; when the chunk is refused, exactly what is missing.
  v_short := p_needed - coalesce(v_held, 0);
  v_chunk := v_short;
  IF p_chunked THEN
    SELECT GREATEST(v_short, l.budget_chunk) INTO v_chunk FROM keen.session_limits AS l;
  END IF;
  BEGIN
    PERFORM keen.add_session_budget(p_session, v_hold_id, v_chunk);
  EXCEPTION WHEN SQLSTATE 'KE001' OR SQLSTATE 'KE002' OR SQLSTATE 'KE003' THEN
    IF v_chunk = v_short THEN
      RAISE;
    END IF;
    PERFORM keen.add_session_budget(p_session, v_hold_id, v_short);
  END;
  -- The hold now covering it (keen.extend_hold of migration 0012 grows it in place).
  SELECT h.id INTO v_hold_id FROM keen.credit_holds AS h
   WHERE h.user_id = p_session.user_id AND h.session_id = p_session.id
     AND h.status = 'active' AND h.amount >= p_needed
   ORDER BY h.created_at DESC, h.id
   LIMIT 1;
  RETURN v_hold_id;
END
$$;

CREATE FUNCTION keen.update_session_progress(
  p_session_id text,
  p_phase      text    DEFAULT NULL,
  p_iterations integer DEFAULT 0,
  p_tool_calls integer DEFAULT 0,
  p_tokens     bigint  DEFAULT 0,
  p_cost       numeric DEFAULT 0
)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  -- now() by value: Citus refuses a non-immutable function inside CASE in an UPDATE.
  v_now timestamptz := pg_catalog.now();
  v_before keen.agent_sessions;
  v_session keen.agent_sessions;
  v_hold_id uuid;
BEGIN
  IF p_phase IS NOT NULL AND keen.session_phase_rank(p_phase) IS NULL THEN
    RAISE EXCEPTION 'invalid argument: unknown phase %', keen.text_prefix(p_phase)
      USING ERRCODE = 'KE013', HINT = 'Phases are EXPLORE, PLAN, SUMMON, COMPLETE, in that order.';
  END IF;
  IF coalesce(p_iterations, 0) < 0 OR coalesce(p_tool_calls, 0) < 0 OR coalesce(p_tokens, 0) < 0 THEN
    RAISE EXCEPTION 'invalid argument: increments must not be negative (iterations %, tool calls %, tokens %)',
        p_iterations, p_tool_calls, p_tokens
      USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_session_cost(coalesce(p_cost, 0), 'cost increment');
  -- The session's row lock only: one user's sessions report in parallel.
  v_before := keen.lock_session(p_session_id);
  IF v_before.execution_status <> 'running' THEN
    RAISE EXCEPTION 'invalid state transition: session % is %; only a running session reports progress',
        pg_catalog.quote_literal(p_session_id), v_before.execution_status
      USING ERRCODE = 'KE007';
  END IF;
  -- Totals stay inside their columns (and the day's figures inside theirs at commit): a
  -- report that would overflow is refused here, not with a raw 22003 later.
  IF v_before.iteration_count::bigint + coalesce(p_iterations, 0) > 2147483647
     OR v_before.tool_calls_count::bigint + coalesce(p_tool_calls, 0) > 2147483647
     OR v_before.tokens_used::numeric + coalesce(p_tokens, 0) > 1000000000000 THEN
    RAISE EXCEPTION 'invalid argument: session % would pass its counter limits (iterations and tool calls 2147483647, tokens 10^12)',
        pg_catalog.quote_literal(p_session_id)
      USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_session_cost(v_before.total_cost + coalesce(p_cost, 0), 'total cost');
  -- The accepted cost is a commitment: the session's hold covers it before it is accepted
  -- (KE001/KE002/KE003 otherwise, and nothing is written), so completing never lacks credits.
  v_hold_id := v_before.hold_id;
  IF coalesce(p_cost, 0) > 0 THEN
    v_hold_id := keen.reserve_session_budget(v_before, keen.round_cost(v_before.total_cost + p_cost), true);
  END IF;
  -- A backward phase is refused by trigger _010_check_update with KE007.
  UPDATE keen.agent_sessions AS s
     SET current_phase = coalesce(p_phase, s.current_phase),
         phase_started_at = CASE WHEN coalesce(p_phase, s.current_phase) = s.current_phase
                                 THEN s.phase_started_at ELSE v_now END,
         iteration_count = s.iteration_count + coalesce(p_iterations, 0),
         tool_calls_count = s.tool_calls_count + coalesce(p_tool_calls, 0),
         tokens_used = s.tokens_used + coalesce(p_tokens, 0),
         total_cost = s.total_cost + coalesce(p_cost, 0),
         last_activity_at = v_now,
         last_event_seq = s.last_event_seq + 1,
         hold_id = v_hold_id
   WHERE s.user_id = v_user_id AND s.id = v_before.id
  RETURNING s.* INTO v_session;
  PERFORM keen.track_session_usage(v_before, v_session);

  PERFORM keen.append_session_event(v_session, 'session.progress', pg_catalog.jsonb_build_object(
    'current_phase', v_session.current_phase,
    'previous_phase', v_before.current_phase,
    'iterations', coalesce(p_iterations, 0),
    'tool_calls', coalesce(p_tool_calls, 0),
    'tokens', coalesce(p_tokens, 0),
    'cost', coalesce(p_cost, 0),
    'iteration_count', v_session.iteration_count,
    'tool_calls_count', v_session.tool_calls_count,
    'tokens_used', v_session.tokens_used,
    'total_cost', v_session.total_cost));
  RETURN v_session;
END
$$;

CREATE FUNCTION keen.complete_session(
  p_session_id        text,
  p_success           boolean,
  p_total_cost        numeric DEFAULT NULL,
  p_files_created     text[]  DEFAULT '{}',
  p_files_modified    text[]  DEFAULT '{}',
  p_files_deleted     text[]  DEFAULT '{}',
  p_completion_report jsonb   DEFAULT NULL,
  p_error_message     text    DEFAULT NULL
)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_account_status text;
  v_status text := CASE WHEN p_success THEN 'completed' ELSE 'failed' END;
  -- now() by value: Citus refuses a non-immutable function inside CASE in an UPDATE.
  v_now timestamptz := pg_catalog.now();
  v_before keen.agent_sessions;
  v_session keen.agent_sessions;
  v_total numeric;
  v_charge numeric;
  v_hold_id uuid;
  v_capture_id uuid;
BEGIN
  IF p_success IS NULL THEN
    RAISE EXCEPTION 'invalid argument: p_success is required' USING ERRCODE = 'KE013';
  END IF;
  IF p_total_cost IS NOT NULL THEN
    PERFORM keen.check_session_cost(p_total_cost, 'total cost');
  END IF;
  PERFORM keen.check_text_array(p_files_created, 'files created', 10000, 4096);
  PERFORM keen.check_text_array(p_files_modified, 'files modified', 10000, 4096);
  PERFORM keen.check_text_array(p_files_deleted, 'files deleted', 10000, 4096);
  PERFORM keen.check_jsonb(p_completion_report, 'completion report', 1048576);
  PERFORM keen.check_text(p_error_message, 'error message', 10000);
  v_before := keen.lock_session(p_session_id);

  IF v_before.execution_status <> 'running' THEN
    -- A retry with the same arguments gets the finished row back and charges nothing.
    IF v_before.execution_status = v_status
       AND (p_total_cost IS NULL OR v_before.total_cost = p_total_cost)
       AND v_before.files_created = coalesce(p_files_created, '{}')
       AND v_before.files_modified = coalesce(p_files_modified, '{}')
       AND v_before.files_deleted = coalesce(p_files_deleted, '{}')
       AND v_before.completion_report IS NOT DISTINCT FROM p_completion_report
       AND v_before.error_message IS NOT DISTINCT FROM p_error_message THEN
      RETURN v_before;
    END IF;
    RAISE EXCEPTION 'invalid state transition: session % is already %', pg_catalog.quote_literal(p_session_id),
        v_before.execution_status
      USING ERRCODE = 'KE007',
            HINT = 'Completing again is only accepted with the same arguments (an idempotent retry).';
  END IF;
  -- A suspended or closed account completes nothing, not even at cost 0 (the deduction
  -- would refuse a charge; a zero cost would otherwise slip past it).
  SELECT a.account_status INTO v_account_status FROM keen.credit_accounts AS a WHERE a.user_id = v_user_id;
  IF v_account_status IS DISTINCT FROM 'active' THEN
    RAISE EXCEPTION 'account not active: credit account is %', coalesce(v_account_status, 'missing')
      USING ERRCODE = 'KE012', HINT = 'Cancel the session instead; it charges nothing.';
  END IF;

  -- The charge is the session's cost (given, else accumulated by progress reports),
  -- raised to the ledger's 4 decimals (keen.round_cost); a zero cost charges nothing.
  v_total := coalesce(p_total_cost, v_before.total_cost);
  v_charge := pg_catalog.round(keen.round_cost(v_total), 4);
  IF v_charge > 0 THEN
    -- At the accepted cost the hold covers it already (capturing at most a hold never fails
    -- for balance or limits); a larger final total must be reserved first, like a report.
    v_hold_id := keen.reserve_session_budget(v_before, v_charge, false);
  END IF;
  -- The session ends first: its hold is then no running session's, and capture_hold and
  -- release_hold (which refuse to settle a running session's hold) settle it.
  UPDATE keen.agent_sessions AS s
     SET execution_status = v_status,
         end_time = GREATEST(v_now, s.start_time),
         current_phase = CASE WHEN p_success THEN 'COMPLETE' ELSE s.current_phase END,
         phase_started_at = CASE WHEN p_success AND s.current_phase <> 'COMPLETE'
                                 THEN v_now ELSE s.phase_started_at END,
         total_cost = v_total,
         files_created = coalesce(p_files_created, '{}'),
         files_modified = coalesce(p_files_modified, '{}'),
         files_deleted = coalesce(p_files_deleted, '{}'),
         completion_report = p_completion_report,
         error_message = p_error_message,
         last_activity_at = v_now,
         last_event_seq = s.last_event_seq + 1
   WHERE s.user_id = v_user_id AND s.id = v_before.id
  RETURNING s.* INTO v_session;
  PERFORM keen.track_session_usage(v_before, v_session);
  IF v_charge > 0 THEN
    SELECT t.id INTO v_capture_id
      FROM keen.capture_hold(p_hold_id => v_hold_id, p_amount => v_charge,
                             p_description => 'agent session ' || p_session_id) AS t;
  END IF;
  -- Holds the session no longer needs go back to the available balance.
  FOR v_hold_id IN
    SELECT h.id FROM keen.credit_holds AS h
     WHERE h.user_id = v_user_id AND h.session_id = v_before.id AND h.status = 'active'
     ORDER BY h.created_at, h.id
  LOOP
    PERFORM keen.release_hold(p_hold_id => v_hold_id);
  END LOOP;

  PERFORM keen.append_session_event(v_session, 'session.' || v_status, pg_catalog.jsonb_build_object(
    'total_cost', v_total,
    'charged', v_charge,
    'capture_transaction_id', v_capture_id,
    'usage_transaction_id', NULL,
    'files_created', pg_catalog.cardinality(v_session.files_created),
    'files_modified', pg_catalog.cardinality(v_session.files_modified),
    'files_deleted', pg_catalog.cardinality(v_session.files_deleted)));
  RETURN v_session;
END
$$;

CREATE FUNCTION keen.cancel_session(p_session_id text)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_session keen.agent_sessions;
  v_cancelled keen.agent_sessions;
  v_row keen.agent_sessions;
  v_old keen.agent_sessions;
  v_level uuid[];
  v_all uuid[] := '{}'::uuid[];
  v_hold_id uuid;
BEGIN
  v_session := keen.lock_session(p_session_id);
  IF v_session.execution_status = 'cancelled' THEN
    RETURN v_session;
  ELSIF v_session.execution_status <> 'running' THEN
    RAISE EXCEPTION 'invalid state transition: session % is %; only a running session can be cancelled',
        pg_catalog.quote_literal(p_session_id), v_session.execution_status
      USING ERRCODE = 'KE007';
  END IF;

  -- Level by level, top down: a level's children are read by a statement that starts
  -- after their running parents were locked (and cancelled), which accept no new child,
  -- so no running descendant is missed. Finished sessions are walked through: their
  -- running descendants are cancelled too.
  v_level := ARRAY[v_session.id];
  WHILE v_level IS NOT NULL LOOP
    FOR v_row IN
      UPDATE keen.agent_sessions AS s
         SET execution_status = 'cancelled',
             end_time = GREATEST(pg_catalog.now(), s.start_time),
             last_activity_at = pg_catalog.now(),
             last_event_seq = s.last_event_seq + 1
       WHERE s.user_id = v_user_id AND s.id = ANY (v_level) AND s.execution_status = 'running'
      RETURNING s.*
    LOOP
      -- The row before: running, no end (the UPDATE matched running rows and changed only
      -- these of the figures' inputs).
      v_old := v_row;
      v_old.execution_status := 'running';
      v_old.end_time := NULL;
      PERFORM keen.track_session_usage(v_old, v_row);
      PERFORM keen.append_session_event(v_row, 'session.cancelled',
        pg_catalog.jsonb_build_object('cancelled_with', v_session.id));
      IF v_row.id = v_session.id THEN
        v_cancelled := v_row;
      END IF;
    END LOOP;
    -- Every session walked (finished ones hold nothing: completion released their holds).
    v_all := v_all || v_level;
    SELECT pg_catalog.array_agg(s.id ORDER BY s.id) INTO v_level
      FROM keen.agent_sessions AS s
     WHERE s.user_id = v_user_id AND s.parent_session_id = ANY (v_level);
  END LOOP;
  -- A cancelled session charges nothing: its holds go back to the available balance. Last,
  -- after every session lock: sessions before the account, as progress and completion lock
  -- them, so a cancel and a report cannot deadlock.
  FOR v_hold_id IN
    SELECT h.id FROM keen.credit_holds AS h
     WHERE h.user_id = v_user_id AND h.session_id = ANY (v_all) AND h.status = 'active'
     ORDER BY h.created_at, h.id
  LOOP
    PERFORM keen.release_hold(p_hold_id => v_hold_id);
  END LOOP;
  RETURN v_cancelled;
END
$$;

CREATE FUNCTION keen.session_tree(p_session_id text)
RETURNS TABLE (
  id                uuid,
  session_id        text,
  parent_session_id uuid,
  depth             integer,
  path              text[],
  current_phase     text,
  execution_status  text,
  total_cost        numeric,
  tokens_used       bigint
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_root uuid := keen.session_uuid(p_session_id);
BEGIN
  -- Depth-first, each node before its subtree, siblings in the order they were started
  -- (start_seq, drawn at start: siblings started in one transaction share a start_time):
  -- the sort key is the path of big-endian 8-byte start_seq values, compared bytewise (a
  -- prefix sorts first). Children by the parent_session_id index. Both terms name the
  -- tenant by value, so the recursion runs on the tenant's one shard.
  RETURN QUERY
    WITH RECURSIVE tree AS (
      SELECT s.id, s.session_id, s.parent_session_id, 0 AS depth,
             ARRAY[s.session_id] AS path,
             pg_catalog.int8send(s.start_seq) AS sort_key,
             s.current_phase, s.execution_status, s.total_cost, s.tokens_used
        FROM keen.agent_sessions AS s
       WHERE s.user_id = v_user_id AND s.id = v_root
      UNION ALL
      SELECT c.id, c.session_id, c.parent_session_id, t.depth + 1,
             t.path || c.session_id,
             t.sort_key || pg_catalog.int8send(c.start_seq),
             c.current_phase, c.execution_status, c.total_cost, c.tokens_used
        FROM tree AS t
        JOIN keen.agent_sessions AS c ON c.user_id = v_user_id AND c.parent_session_id = t.id
    )
    SELECT tree.id, tree.session_id, tree.parent_session_id, tree.depth, tree.path,
           tree.current_phase, tree.execution_status, tree.total_cost, tree.tokens_used
      FROM tree
     ORDER BY tree.sort_key;
END
$$;

CREATE FUNCTION keen.list_sessions(
  p_status            text        DEFAULT NULL,
  p_before_start_time timestamptz DEFAULT NULL,
  p_before_id         uuid        DEFAULT NULL,
  p_limit             integer     DEFAULT 50
)
RETURNS SETOF keen.agent_sessions
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
BEGIN
  IF p_status IS NOT NULL AND p_status NOT IN ('running', 'completed', 'failed', 'cancelled') THEN
    RAISE EXCEPTION 'invalid argument: unknown execution status %', pg_catalog.quote_literal(p_status)
      USING ERRCODE = 'KE013', HINT = 'Statuses are running, completed, failed, cancelled.';
  END IF;
  IF (p_before_start_time IS NULL) <> (p_before_id IS NULL) THEN
    RAISE EXCEPTION 'invalid argument: the page cursor needs both p_before_start_time and p_before_id'
      USING ERRCODE = 'KE013', HINT = 'Pass the start_time and id of the last row of the previous page.';
  END IF;
  -- NULL stands for the default, so bindings may pass every optional argument.
  IF coalesce(p_limit, 50) NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'invalid argument: page size % is not between 1 and 1000', p_limit USING ERRCODE = 'KE013';
  END IF;
  -- Newest first, after the cursor (start_time, id). Written as "start_time <= t AND
  -- (start_time < t OR id < i)" rather than a row comparison: the first term is a range
  -- condition on the (user_id, start_time DESC, id DESC) indexes even in a generic plan,
  -- so each page is an index range scan however deep the pagination goes.
  RETURN QUERY
    SELECT s.*
      FROM keen.agent_sessions AS s
     WHERE s.user_id = v_user_id
       AND (p_status IS NULL OR s.execution_status = p_status)
       AND s.start_time <= coalesce(p_before_start_time, 'infinity')
       AND (p_before_id IS NULL OR s.start_time < p_before_start_time OR s.id < p_before_id)
     ORDER BY s.start_time DESC, s.id DESC
     LIMIT coalesce(p_limit, 50);
END
$$;

CREATE FUNCTION keen.list_session_events(
  p_after_id   bigint  DEFAULT 0,
  p_session_id text    DEFAULT NULL,
  p_limit      integer DEFAULT 500
)
RETURNS SETOF keen.session_events
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  -- Every transaction older than the snapshot's xmin has ended, so its events are final
  -- (visible when committed); an event still to commit belongs to a transaction >= xmin,
  -- so its id is >= xmin * 2^20 (keen.next_session_event_id). Below this horizon the log no
  -- longer changes. The same snapshot as the reads below (a STABLE function): never later.
  -- On Citus this is the coordinator's snapshot, and event ids carry coordinator transaction
  -- ids: see keen.append_session_event for why the horizon holds on a cluster.
  v_horizon bigint := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint << 20;
  v_session_uuid uuid;
BEGIN
  -- NULL stands for the default, so bindings may pass every optional argument.
  IF coalesce(p_after_id, 0) < 0 THEN
    RAISE EXCEPTION 'invalid argument: event cursor % is not >= 0', p_after_id USING ERRCODE = 'KE013';
  END IF;
  IF coalesce(p_limit, 500) NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'invalid argument: page size % is not between 1 and 10000', p_limit USING ERRCODE = 'KE013';
  END IF;
  -- Only events below the horizon, whose transactions are all over: "id > cursor" then
  -- misses nothing that commits later and repeats nothing, with no lock on the writers.
  IF p_session_id IS NULL THEN
    RETURN QUERY
      SELECT e.* FROM keen.session_events AS e
       WHERE e.user_id = v_user_id AND e.id > coalesce(p_after_id, 0) AND e.id < v_horizon
       ORDER BY e.id
       LIMIT coalesce(p_limit, 500);
  ELSE
    v_session_uuid := keen.session_uuid(p_session_id);
    RETURN QUERY
      SELECT e.* FROM keen.session_events AS e
       WHERE e.session_id = v_session_uuid AND e.user_id = v_user_id
         AND e.id > coalesce(p_after_id, 0) AND e.id < v_horizon
       ORDER BY e.id
       LIMIT coalesce(p_limit, 500);
  END IF;
END
$$;

CREATE FUNCTION keen.session_events_waiting(p_session_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  -- As in keen.list_session_events.
  v_horizon bigint := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint << 20;
  v_session_uuid uuid;
BEGIN
  -- Committed events above the horizon wait for an older transaction (of any user) to end;
  -- its end sends no notification when it wrote no event, so a reader looks again soon.
  -- (PERFORM … FOUND, not EXISTS (SELECT …): Citus cannot plan the latter in PL/pgSQL.)
  IF p_session_id IS NULL THEN
    PERFORM FROM keen.session_events AS e WHERE e.user_id = v_user_id AND e.id >= v_horizon LIMIT 1;
    RETURN FOUND;
  END IF;
  v_session_uuid := keen.session_uuid(p_session_id);
  PERFORM FROM keen.session_events AS e
   WHERE e.session_id = v_session_uuid AND e.user_id = v_user_id AND e.id >= v_horizon
   LIMIT 1;
  RETURN FOUND;
END
$$;

CREATE FUNCTION keen.prune_session_events(p_older_than interval DEFAULT '30 days')
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_cutoff timestamptz;
  v_user_id uuid;
  v_count bigint;
  v_deleted bigint := 0;
BEGIN
  IF p_older_than IS NULL OR p_older_than <= interval '0' THEN
    RAISE EXCEPTION 'invalid argument: retention % is not a positive interval', p_older_than
      USING ERRCODE = 'KE013';
  END IF;
  v_cutoff := pg_catalog.now() - p_older_than;
  -- Sessions keep last_event_seq, so numbering continues after a prune; a client whose
  -- cursor is older than the retention must reload the sessions themselves. Tenant by
  -- tenant: each DELETE goes to one shard.
  FOR v_user_id IN
    -- all tenants: the operator's retention job lists the tenants with old events (a read, no lock)
    SELECT DISTINCT e.user_id FROM keen.session_events AS e WHERE e.created_at < v_cutoff ORDER BY e.user_id
  LOOP
    DELETE FROM keen.session_events AS e WHERE e.user_id = v_user_id AND e.created_at < v_cutoff;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_deleted := v_deleted + v_count;
  END LOOP;
  RETURN v_deleted;
END
$$;

CREATE FUNCTION keen.open_connection(
  p_connection_id     text,
  p_client_ip         inet,
  p_user_agent        text    DEFAULT NULL,
  p_client_type       text    DEFAULT 'web',
  p_session_id        text    DEFAULT NULL,
  p_subscribed_events text[]  DEFAULT '{}',
  p_session_filters   text[]  DEFAULT NULL
)
RETURNS keen.websocket_connections
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_session_uuid uuid;
  v_filters uuid[];
  v_connection keen.websocket_connections;
BEGIN
  IF p_connection_id IS NULL OR p_client_ip IS NULL THEN
    RAISE EXCEPTION 'invalid argument: connection id and client ip are required' USING ERRCODE = 'KE013';
  END IF;
  PERFORM keen.check_text(p_connection_id, 'connection id', 255);
  PERFORM keen.check_text(p_user_agent, 'user agent', 512);
  PERFORM keen.check_text_array(p_subscribed_events, 'subscribed events', 64, 63);
  PERFORM keen.check_text_array(p_session_filters, 'session filters', 64, 128);
  PERFORM FROM keen.users AS u WHERE u.user_id = v_user_id AND u.id = v_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no tenant context: user % does not exist', v_user_id USING ERRCODE = 'KE010';
  END IF;
  -- NULL stands for the default, so bindings may pass every optional argument.
  IF coalesce(p_client_type, 'web') NOT IN ('web', 'cli', 'ide', 'api') THEN
    RAISE EXCEPTION 'invalid argument: unknown client type %', keen.text_prefix(p_client_type)
      USING ERRCODE = 'KE013', HINT = 'Client types are web, cli, ide, api.';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.unnest(p_subscribed_events) AS e(name)
              WHERE e.name IS NULL OR e.name !~ '^[a-z*][a-z_.*]{0,62}$') THEN
    RAISE EXCEPTION 'invalid argument: subscribed events are not event type patterns'
      USING ERRCODE = 'KE013', HINT = 'Use event types such as session.progress, or session.* and *.';
  END IF;
  IF p_session_id IS NOT NULL THEN
    v_session_uuid := keen.session_uuid(p_session_id);
  END IF;
  -- Session filters name the caller's sessions by their external ids; each must exist.
  SELECT pg_catalog.array_agg(keen.session_uuid(f.session_id) ORDER BY f.ord) INTO v_filters
    FROM pg_catalog.unnest(p_session_filters) WITH ORDINALITY AS f(session_id, ord);

  INSERT INTO keen.websocket_connections AS c
         (user_id, session_id, connection_id, client_ip, user_agent, client_type,
          subscribed_events, session_filters)
  VALUES (v_user_id, v_session_uuid, p_connection_id, p_client_ip, p_user_agent, coalesce(p_client_type, 'web'),
          coalesce(p_subscribed_events, '{}'), v_filters)
  ON CONFLICT ON CONSTRAINT websocket_connections_user_id_connection_id_key DO NOTHING
  RETURNING c.* INTO v_connection;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'already exists: connection %', pg_catalog.quote_literal(p_connection_id)
      USING ERRCODE = 'KE009', DETAIL = 'websocket_connections_user_id_connection_id_key';
  END IF;
  PERFORM keen.sync_session_connections(v_user_id, v_session_uuid);
  RETURN v_connection;
END
$$;

CREATE FUNCTION keen.lock_connection(p_connection_id text)
RETURNS keen.websocket_connections
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  v_connection keen.websocket_connections;
BEGIN
  PERFORM keen.check_text(p_connection_id, 'connection id', 255);
  SELECT c.* INTO v_connection
    FROM keen.websocket_connections AS c
   WHERE c.user_id = v_user_id AND c.connection_id = p_connection_id
     FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'not found: connection %', coalesce(pg_catalog.quote_literal(p_connection_id), 'NULL')
      USING ERRCODE = 'KE006';
  END IF;
  RETURN v_connection;
END
$$;

CREATE FUNCTION keen.ping_connection(p_connection_id text)
RETURNS keen.websocket_connections
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_connection keen.websocket_connections := keen.lock_connection(p_connection_id);
BEGIN
  IF v_connection.connection_status <> 'active' THEN
    RAISE EXCEPTION 'invalid state transition: connection % is %', pg_catalog.quote_literal(p_connection_id),
        v_connection.connection_status
      USING ERRCODE = 'KE007', HINT = 'A closed or reaped connection is not revived: open a new one.';
  END IF;
  UPDATE keen.websocket_connections AS c
     SET last_ping_at = pg_catalog.now()
   WHERE c.user_id = v_connection.user_id AND c.id = v_connection.id
  RETURNING c.* INTO v_connection;
  RETURN v_connection;
END
$$;

CREATE FUNCTION keen.close_connection(p_connection_id text)
RETURNS keen.websocket_connections
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_connection keen.websocket_connections := keen.lock_connection(p_connection_id);
BEGIN
  -- Closing is idempotent: a closed or reaped connection comes back unchanged.
  IF v_connection.connection_status = 'active' THEN
    UPDATE keen.websocket_connections AS c
       SET connection_status = 'closed', disconnected_at = pg_catalog.now()
     WHERE c.user_id = v_connection.user_id AND c.id = v_connection.id
    RETURNING c.* INTO v_connection;
    PERFORM keen.sync_session_connections(v_connection.user_id, v_connection.session_id);
  END IF;
  RETURN v_connection;
END
$$;

CREATE FUNCTION keen.sync_session_connections(p_user_id uuid, p_session_id uuid)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_session_id IS NULL THEN
    RETURN;
  END IF;
  -- Lock first, then read in a new statement: its snapshot sees every connection committed
  -- by whoever held the lock before, so concurrent opens and closes of one session's
  -- connections cannot overwrite each other's list.
  PERFORM FROM keen.agent_sessions AS s WHERE s.user_id = p_user_id AND s.id = p_session_id FOR NO KEY UPDATE;
  UPDATE keen.agent_sessions AS s
     SET websocket_connections = ARRAY(
           SELECT c.connection_id FROM keen.websocket_connections AS c
            WHERE c.user_id = p_user_id AND c.session_id = p_session_id AND c.connection_status = 'active'
            ORDER BY c.connection_id)
   WHERE s.user_id = p_user_id AND s.id = p_session_id;
END
$$;

CREATE FUNCTION keen.reap_stale_connections(p_idle interval DEFAULT '2 minutes')
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now timestamptz := pg_catalog.now();
  v_cutoff timestamptz;
  v_user_id uuid;
  v_session_id uuid;
  v_sessions uuid[];
  v_reaped integer := 0;
BEGIN
  IF p_idle IS NULL OR p_idle <= interval '0' THEN
    RAISE EXCEPTION 'invalid argument: idle time % is not a positive interval', p_idle
      USING ERRCODE = 'KE013';
  END IF;
  v_cutoff := v_now - p_idle;
  -- Tenant by tenant (definer, owner_all policy): each statement below goes to one shard.
  FOR v_user_id IN
    -- all tenants: the housekeeping job lists the tenants with silent connections (a read, no lock)
    SELECT DISTINCT c.user_id
      FROM keen.websocket_connections AS c
     WHERE c.connection_status = 'active' AND c.last_ping_at < v_cutoff
     ORDER BY c.user_id
  LOOP
    v_sessions := '{}';
    -- Rows being pinged right now are skipped, not waited for: they are alive.
    FOR v_session_id IN
      WITH stale AS (
        SELECT c.id
          FROM keen.websocket_connections AS c
         WHERE c.user_id = v_user_id AND c.connection_status = 'active' AND c.last_ping_at < v_cutoff
         ORDER BY c.id
           FOR NO KEY UPDATE SKIP LOCKED
      )
      UPDATE keen.websocket_connections AS c
         SET connection_status = 'stale', disconnected_at = v_now
        FROM stale
       WHERE c.user_id = v_user_id AND c.id = stale.id
      RETURNING c.session_id
    LOOP
      v_reaped := v_reaped + 1;
      IF v_session_id IS NOT NULL AND NOT v_session_id = ANY (v_sessions) THEN
        v_sessions := v_sessions || v_session_id;
      END IF;
    END LOOP;
    -- The sessions' connection lists, after their connections (the order open and close take).
    FOREACH v_session_id IN ARRAY v_sessions
    LOOP
      PERFORM keen.sync_session_connections(v_user_id, v_session_id);
    END LOOP;
  END LOOP;
  RETURN v_reaped;
END
$$;

CREATE FUNCTION keen.tg_agent_sessions__check_update()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF (NEW.id, NEW.user_id, NEW.session_id, NEW.parent_session_id, NEW.session_depth, NEW.start_time)
     IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.session_id, OLD.parent_session_id, OLD.session_depth, OLD.start_time) THEN
    RAISE EXCEPTION 'invalid argument: a session''s ids, parent, depth and start time never change (session %)',
        pg_catalog.quote_literal(OLD.session_id)
      USING ERRCODE = 'KE013';
  END IF;
  -- The state machine: running -> completed | failed | cancelled, and nothing after.
  IF OLD.execution_status <> 'running'
     AND (NEW.execution_status, NEW.current_phase, NEW.iteration_count, NEW.tool_calls_count,
          NEW.tokens_used, NEW.total_cost, NEW.end_time, NEW.files_created, NEW.files_modified,
          NEW.files_deleted, NEW.completion_report, NEW.error_message)
         IS DISTINCT FROM
         (OLD.execution_status, OLD.current_phase, OLD.iteration_count, OLD.tool_calls_count,
          OLD.tokens_used, OLD.total_cost, OLD.end_time, OLD.files_created, OLD.files_modified,
          OLD.files_deleted, OLD.completion_report, OLD.error_message) THEN
    RAISE EXCEPTION 'invalid state transition: session % is %; it no longer changes',
        pg_catalog.quote_literal(OLD.session_id), OLD.execution_status
      USING ERRCODE = 'KE007';
  END IF;
  -- The ranks of keen.session_phase_rank, spelled out: on Citus this runs on the worker
  -- holding the shard, where only the trigger's own function is created, not its callees.
  IF pg_catalog.array_position(ARRAY['EXPLORE', 'PLAN', 'SUMMON', 'COMPLETE']::text[], NEW.current_phase)
     < pg_catalog.array_position(ARRAY['EXPLORE', 'PLAN', 'SUMMON', 'COMPLETE']::text[], OLD.current_phase) THEN
    RAISE EXCEPTION 'invalid state transition: session % cannot go back from phase % to %',
        pg_catalog.quote_literal(OLD.session_id), OLD.current_phase, NEW.current_phase
      USING ERRCODE = 'KE007', HINT = 'Phases move forward only: EXPLORE, PLAN, SUMMON, COMPLETE.';
  END IF;
  IF NEW.iteration_count < OLD.iteration_count OR NEW.tool_calls_count < OLD.tool_calls_count
     OR NEW.tokens_used < OLD.tokens_used OR NEW.last_event_seq < OLD.last_event_seq THEN
    RAISE EXCEPTION 'invalid state transition: the counters of session % only grow', pg_catalog.quote_literal(OLD.session_id)
      USING ERRCODE = 'KE007';
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION keen.next_session_event_id()
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_base bigint := pg_catalog.pg_current_xact_id()::text::bigint << 20;
  v_last text := pg_catalog.current_setting('keen.last_event_id', true);
  v_id bigint;
BEGIN
  -- Ids without a lock: the inserting transaction's id * 2^20 plus its own event count,
  -- kept in a transaction-local setting (rolled back with a subtransaction, like its rows).
  -- Ids of different transactions never collide and order like their transaction ids, which
  -- is what the horizon of keen.list_session_events needs.
  IF v_last ~ '^[0-9]{1,19}$' AND v_last::numeric >= v_base AND v_last::numeric < v_base + 1048575 THEN
    v_id := v_last::bigint + 1;
  ELSIF v_last ~ '^[0-9]{1,19}$' AND v_last::numeric = v_base + 1048575 THEN
    RAISE EXCEPTION 'invalid argument: more than 1048576 events in one transaction'
      USING ERRCODE = 'KE013', HINT = 'Split the work into several transactions.';
  ELSE
    v_id := v_base;
  END IF;
  PERFORM pg_catalog.set_config('keen.last_event_id', v_id::text, true);
  RETURN v_id;
END
$$;

-- ===== triggers ==============================================================
CREATE TRIGGER _100_set_updated_at BEFORE UPDATE ON keen.agent_sessions
  FOR EACH ROW EXECUTE FUNCTION keen.tg_set_updated_at();
CREATE TRIGGER _100_set_updated_at BEFORE UPDATE ON keen.websocket_connections
  FOR EACH ROW EXECUTE FUNCTION keen.tg_set_updated_at();
CREATE TRIGGER _010_check_update BEFORE UPDATE ON keen.agent_sessions
  FOR EACH ROW EXECUTE FUNCTION keen.tg_agent_sessions__check_update();

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
  USING (user_id = keen.current_user_id());
CREATE POLICY owner_all ON keen.agent_sessions FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.session_events FOR SELECT TO keen_app
  USING (user_id = keen.current_user_id());
CREATE POLICY owner_all ON keen.session_events FOR ALL TO keen_owner USING (true) WITH CHECK (true);
CREATE POLICY select_own ON keen.websocket_connections FOR SELECT TO keen_app
  USING (user_id = keen.current_user_id());
CREATE POLICY owner_all ON keen.websocket_connections FOR ALL TO keen_owner USING (true) WITH CHECK (true);
ALTER TABLE keen.session_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.session_limits FORCE ROW LEVEL SECURITY;
-- Global settings, no tenant rows: every tenant reads the one row, only the owner writes.
CREATE POLICY select_all ON keen.session_limits FOR SELECT TO keen_app USING (true);
CREATE POLICY owner_all ON keen.session_limits FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== grants ================================================================
-- Read through RLS only: every write goes through the SECURITY DEFINER session functions,
-- so keen_app can neither lock these tables nor write session state around them.
GRANT SELECT ON keen.agent_sessions, keen.session_events, keen.websocket_connections, keen.session_limits
  TO keen_app;
GRANT EXECUTE ON FUNCTION
  keen.start_session(text, text, text, text, text),
  keen.update_session_progress(text, text, integer, integer, bigint, numeric),
  keen.complete_session(text, boolean, numeric, text[], text[], text[], jsonb, text),
  keen.cancel_session(text),
  keen.session_tree(text),
  keen.get_session(text),
  keen.get_session_by_id(uuid),
  keen.list_sessions(text, timestamptz, uuid, integer),
  keen.list_session_events(bigint, text, integer),
  keen.session_events_waiting(text),
  keen.open_connection(text, inet, text, text, text, text[], text[]),
  keen.ping_connection(text),
  keen.close_connection(text)
TO keen_app;
-- Helpers that the read functions above call as keen_app (SECURITY INVOKER). The writing
-- helpers (locks, event append, checks) are called only by the SECURITY DEFINER functions,
-- as keen_owner, and are not keen_app's.
GRANT EXECUTE ON FUNCTION keen.session_uuid(text) TO keen_app;
-- Not granted: reap_stale_connections (housekeeping login, SECURITY DEFINER) and
-- prune_session_events (operators).

-- ===== comments ==============================================================
COMMENT ON TABLE keen.agent_sessions IS 'One agent run; child sessions form a tree per task.';
COMMENT ON COLUMN keen.agent_sessions.session_id IS 'External, caller-chosen id; unique per tenant.';
COMMENT ON COLUMN keen.agent_sessions.parent_session_id IS 'The parent session (same tenant, by composite key); NULL for a root.';
COMMENT ON COLUMN keen.agent_sessions.session_depth IS '0 for a root, parent''s depth + 1 otherwise.';
COMMENT ON COLUMN keen.agent_sessions.total_cost IS 'Cost in credits with 6 decimals; charged to the 4-decimal ledger on completion.';
COMMENT ON COLUMN keen.agent_sessions.success IS 'Derived from execution_status, so the two can never disagree.';
COMMENT ON COLUMN keen.agent_sessions.last_event_seq IS 'Number of the last event in this session''s log.';
COMMENT ON TABLE keen.session_events IS 'Durable per-session event log; NOTIFY keen_events (sent by keen.append_session_event) announces each row.';
COMMENT ON COLUMN keen.session_events.seq IS 'Event number within its session: 1, 2, 3… without gaps.';
COMMENT ON TABLE keen.websocket_connections IS 'Live WebSocket/CLI/IDE connections following a user''s sessions.';
COMMENT ON COLUMN keen.websocket_connections.connection_id IS 'The WebSocket server''s id of the connection; unique per tenant.';
COMMENT ON COLUMN keen.agent_sessions.websocket_connections IS
  'connection_id of the active connections following this session, sorted; kept in step by keen.sync_session_connections (open, close, reap), read-only otherwise.';
COMMENT ON TABLE keen.session_limits IS 'Limits on session trees (one row, set by operators); NULL means no limit.';
COMMENT ON COLUMN keen.session_limits.max_depth IS 'Deepest session_depth a child may have (a root is 0).';
COMMENT ON COLUMN keen.session_limits.max_children IS 'Most children (of any status) one session may start.';
COMMENT ON FUNCTION keen.session_phase_rank(text) IS 'Position of a phase in EXPLORE < PLAN < SUMMON < COMPLETE; NULL for an unknown one.';
COMMENT ON FUNCTION keen.get_session(text) IS 'The caller''s session with this external id; KE006 when there is none.';
COMMENT ON FUNCTION keen.get_session_by_id(uuid) IS
  'The caller''s session with this uuid id (session_events.session_id names it); KE006 when there is none.';
COMMENT ON FUNCTION keen.session_uuid(text) IS 'The uuid id of the caller''s session with this external id; KE006 when there is none.';
COMMENT ON FUNCTION keen.lock_session(text) IS 'The caller''s session with this external id, row-locked; KE006 when there is none.';
COMMENT ON FUNCTION keen.lock_connection(text) IS 'The caller''s connection with this id, row-locked; KE006 when there is none.';
COMMENT ON FUNCTION keen.append_session_event(keen.agent_sessions, text, jsonb) IS
  'Appends an event numbered with the given (just updated) row''s last_event_seq, its id drawn here (keen.next_session_event_id: 40001 when the session''s previous event has a younger one), and sends the keen_events wake-up; returns the id.';
COMMENT ON FUNCTION keen.check_session_cost(numeric, text) IS
  'Raises KE004 unless the cost is finite, >= 0, below 10^8 and of at most 6 decimals.';
COMMENT ON FUNCTION keen.start_session(text, text, text, text, text) IS
  'Starts a session of the caller, optionally as a child of the caller''s running session p_parent_session_id (external id): depth = parent''s + 1, limits from keen.session_limits (KE008). KE006 unknown parent, KE007 parent not running, KE009 duplicate id. Event session.started.';
COMMENT ON FUNCTION keen.add_session_budget(keen.agent_sessions, uuid, numeric) IS
  'Adds p_amount to the session''s budget: onto its active hold (keen.extend_hold) or as a new hold tied to it. Not keen_app''s.';
COMMENT ON FUNCTION keen.reserve_session_budget(keen.agent_sessions, numeric, boolean) IS
  'Makes the session''s hold cover p_needed, extending it by keen.session_limits.budget_chunk (or exactly the shortfall when the chunk is refused); KE001/KE002/KE003 when even that is refused. Returns the hold id. Not keen_app''s.';
COMMENT ON FUNCTION keen.update_session_progress(text, text, integer, integer, bigint, numeric) IS
  'Adds the increments to a running session''s counters and cost and moves its phase forward (KE007 backward or not running, KE013 unknown phase, KE004 bad cost). A cost beyond the session''s hold is reserved first: KE001/KE002/KE003 and nothing written when refused. Event session.progress.';
COMMENT ON FUNCTION keen.complete_session(text, boolean, numeric, text[], text[], text[], jsonb, text) IS
  'Ends a running session as completed or failed, records its files and report, and charges its cost (p_total_cost, else the accumulated total, raised to 4 decimals) in the same transaction by capturing the session''s hold, which covers the accepted cost (a larger final total is reserved first: KE001/KE002/KE003, nothing written), and releases other holds. Idempotent for the same arguments; otherwise KE007 once finished. Event session.completed or session.failed.';
COMMENT ON FUNCTION keen.cancel_session(text) IS
  'Cancels a running session and all its running descendants, releasing their holds (idempotent for a cancelled one; KE007 for a finished one). Event session.cancelled per session.';
COMMENT ON FUNCTION keen.session_tree(text) IS
  'The session and all its descendants in one query: depth (0 for the given one), path of external ids, depth-first with siblings in start order.';
COMMENT ON FUNCTION keen.list_sessions(text, timestamptz, uuid, integer) IS
  'The caller''s sessions newest first (start_time, id), optionally of one status; keyset pages: pass the last row''s start_time and id.';
COMMENT ON FUNCTION keen.list_session_events(bigint, text, integer) IS
  'The caller''s events (or one session''s) with id > p_after_id and below keen.list_session_events, in order: the replay of the event stream, gapless without a writer lock.';
COMMENT ON FUNCTION keen.session_events_waiting(text) IS
  'Whether the caller (or one session) has committed events not yet listed because an older transaction is still running: look again shortly.';
COMMENT ON FUNCTION keen.prune_session_events(interval) IS
  'Operator: deletes events older than p_older_than (default 30 days), tenant by tenant; returns how many.';
COMMENT ON FUNCTION keen.open_connection(text, inet, text, text, text, text[], text[]) IS
  'Records a live connection of the caller, optionally following a session and filtering events by type and session (external ids). KE009 duplicate id.';
COMMENT ON FUNCTION keen.ping_connection(text) IS 'Marks an active connection alive now; KE007 when closed or reaped.';
COMMENT ON FUNCTION keen.close_connection(text) IS 'Closes a connection (idempotent).';
COMMENT ON FUNCTION keen.reap_stale_connections(interval) IS
  'Housekeeping, all tenants (SECURITY DEFINER), tenant by tenant: marks active connections silent for longer than p_idle stale; returns how many.';
COMMENT ON FUNCTION keen.sync_session_connections(uuid, uuid) IS
  'Recomputes agent_sessions.websocket_connections of one session of the user, under the session''s row lock; called after a connection change. Not keen_app''s.';
COMMENT ON FUNCTION keen.tg_agent_sessions__check_update() IS
  'Trigger: identity and place in the tree are immutable; running -> completed|failed|cancelled only; phases forward; counters grow.';
COMMENT ON FUNCTION keen.next_session_event_id() IS
  'The next session_events.id of this transaction: its id * 2^20 plus its event count (no lock; KE013 past 2^20 events); drawn by keen.append_session_event. Not keen_app''s.';

COMMENT ON COLUMN keen.agent_sessions.user_id IS 'The tenant owning the session.';
COMMENT ON COLUMN keen.agent_sessions.git_branch IS 'Git branch the agent works on.';
COMMENT ON COLUMN keen.agent_sessions.vision IS 'The instructions the agent was started with.';
COMMENT ON COLUMN keen.agent_sessions.working_directory IS 'Directory the agent works in.';
COMMENT ON COLUMN keen.agent_sessions.current_phase IS 'EXPLORE, PLAN, SUMMON or COMPLETE; moves forward only.';
COMMENT ON COLUMN keen.agent_sessions.start_time IS 'When the session started.';
COMMENT ON COLUMN keen.agent_sessions.end_time IS 'When it completed, failed or was cancelled; NULL while running.';
COMMENT ON COLUMN keen.agent_sessions.last_activity_at IS 'Time of the last progress report or state change.';
COMMENT ON COLUMN keen.agent_sessions.phase_started_at IS 'When the current phase began.';
COMMENT ON COLUMN keen.agent_sessions.iteration_count IS 'Agent iterations so far (sum of reported increments).';
COMMENT ON COLUMN keen.agent_sessions.tool_calls_count IS 'Tool calls so far (sum of reported increments).';
COMMENT ON COLUMN keen.agent_sessions.tokens_used IS 'Model tokens so far (sum of reported increments).';
COMMENT ON COLUMN keen.agent_sessions.context_window_size IS 'Model context window in tokens.';
COMMENT ON COLUMN keen.agent_sessions.files_modified IS 'Paths the session modified (recorded at completion).';
COMMENT ON COLUMN keen.agent_sessions.files_created IS 'Paths the session created (recorded at completion).';
COMMENT ON COLUMN keen.agent_sessions.files_deleted IS 'Paths the session deleted (recorded at completion).';
COMMENT ON COLUMN keen.agent_sessions.execution_status IS 'running, completed, failed or cancelled; running is the only state that changes.';
COMMENT ON COLUMN keen.agent_sessions.error_message IS 'Why a failed session failed.';
COMMENT ON COLUMN keen.agent_sessions.completion_report IS 'The agents final report as JSON.';
COMMENT ON COLUMN keen.agent_sessions.streaming_enabled IS 'Whether progress is streamed to connected clients.';
COMMENT ON COLUMN keen.agent_sessions.streaming_time IS 'Milliseconds spent streaming, when reported.';
COMMENT ON COLUMN keen.agent_sessions.agent_options IS 'The agents options as JSON.';
COMMENT ON COLUMN keen.session_events.user_id IS 'The tenant owning the session (RLS: a listener never sees another tenants events).';
COMMENT ON COLUMN keen.session_events.session_id IS 'The session (uuid id) the event belongs to.';
COMMENT ON COLUMN keen.session_events.event_type IS 'What happened, e.g. session.started, session.progress, session.completed.';
COMMENT ON COLUMN keen.session_events.payload IS 'The events details as JSON (read from the log, never sent in NOTIFY).';
COMMENT ON COLUMN keen.websocket_connections.user_id IS 'The tenant the connection belongs to.';
COMMENT ON COLUMN keen.websocket_connections.session_id IS 'The session (uuid id) the connection follows, if one.';
COMMENT ON COLUMN keen.websocket_connections.client_ip IS 'Client address.';
COMMENT ON COLUMN keen.websocket_connections.user_agent IS 'Client user agent.';
COMMENT ON COLUMN keen.websocket_connections.client_type IS 'web, cli, ide or api.';
COMMENT ON COLUMN keen.websocket_connections.connected_at IS 'When the connection was opened.';
COMMENT ON COLUMN keen.websocket_connections.last_ping_at IS 'Last sign of life; the reaper closes connections silent for too long.';
COMMENT ON COLUMN keen.websocket_connections.disconnected_at IS 'When the connection was closed or reaped; NULL while active.';
COMMENT ON COLUMN keen.websocket_connections.subscribed_events IS 'Event types the client wants; empty for all.';
COMMENT ON COLUMN keen.websocket_connections.session_filters IS 'External session ids the client follows; NULL for all.';
COMMENT ON COLUMN keen.websocket_connections.connection_status IS 'active, closed or stale (reaped).';
COMMENT ON COLUMN keen.session_limits.singleton IS 'Always true: the table holds one row.';

COMMENT ON COLUMN keen.agent_sessions.id IS 'Primary key.';
COMMENT ON COLUMN keen.agent_sessions.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN keen.agent_sessions.updated_at IS 'When the row was last updated (trigger _100_set_updated_at).';
COMMENT ON COLUMN keen.session_events.id IS
  'Event id: the inserting transaction''s id * 2^20 plus its event number; a listener resumes after one (list_session_events delivers only ids whose transactions are over). Up to 2^63: send it to JavaScript as a string.';
COMMENT ON COLUMN keen.agent_sessions.start_seq IS 'Start order across the whole database (siblings started in one transaction share start_time).';
COMMENT ON COLUMN keen.agent_sessions.hold_id IS 'The credit hold reserving the session''s accepted cost (credit_holds.id); NULL before its first cost.';
COMMENT ON COLUMN keen.session_limits.budget_chunk IS 'Credits a running session reserves at a time beyond its accepted cost, so most progress reports do not lock the account.';
COMMENT ON COLUMN keen.session_events.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN keen.session_limits.updated_at IS 'When an operator last changed the limits.';
COMMENT ON COLUMN keen.websocket_connections.id IS 'Primary key.';
COMMENT ON COLUMN keen.websocket_connections.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN keen.websocket_connections.updated_at IS 'When the row was last updated (trigger _100_set_updated_at).';

RESET ROLE;
