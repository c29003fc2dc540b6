-- Roll back 0017_distributable_sessions: the triggers that read and wrote tables (depth,
-- usage, event sequence and NOTIFY, connection lists), the column default of
-- session_events.id, and the functions as they were.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

DROP TRIGGER _500_flush ON keen.session_usage_queue;
DROP TABLE keen.session_usage_queue;
DROP FUNCTION keen.sync_session_connections(uuid, uuid);
DROP FUNCTION keen.track_session_usage(keen.agent_sessions, keen.agent_sessions);
DROP FUNCTION keen.tg_session_usage_queue__flush();

CREATE OR REPLACE FUNCTION keen.lock_session(p_session_id text)
RETURNS keen.agent_sessions
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  -- NO KEY UPDATE is what the UPDATE that follows takes anyway; it lets foreign-key
  -- checks (events, ledger rows, children) through.
  SELECT s.* FROM keen.agent_sessions AS s
   WHERE s.user_id = (SELECT keen.require_user_id()) AND s.id = (SELECT keen.session_uuid(p_session_id))
     FOR NO KEY UPDATE
$$;

CREATE OR REPLACE FUNCTION keen.append_session_event(p_session keen.agent_sessions, p_event_type text, p_payload jsonb)
RETURNS bigint
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  -- p_session is the row as just updated: its last_event_seq is this event's number.
  INSERT INTO keen.session_events (user_id, session_id, seq, event_type, payload)
  VALUES (p_session.user_id, p_session.id, p_session.last_event_seq, p_event_type, p_payload)
  RETURNING id
$$;

CREATE OR REPLACE FUNCTION keen.start_session(
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
  -- need none, see keen.tg_session_events__sequence).

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

  -- The row is created with its first event's number; the depth comes from the parent
  -- (trigger _010_set_depth).
  INSERT INTO keen.agent_sessions AS s
         (user_id, session_id, parent_session_id, git_branch, vision, working_directory, last_event_seq)
  VALUES (v_user_id, p_session_id, v_parent.id, p_git_branch, p_vision, p_working_directory, 1)
  ON CONFLICT ON CONSTRAINT agent_sessions_user_id_session_id_key DO NOTHING
  RETURNING s.* INTO v_session;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'already exists: session %', pg_catalog.quote_literal(p_session_id)
      USING ERRCODE = 'KE009', DETAIL = 'agent_sessions_user_id_session_id_key';
  END IF;

  PERFORM keen.append_session_event(v_session, 'session.started', pg_catalog.jsonb_build_object(
    'parent_session_id', v_session.parent_session_id,
    'session_depth', v_session.session_depth,
    'current_phase', v_session.current_phase));
  RETURN v_session;
END
$$;

CREATE OR REPLACE FUNCTION keen.update_session_progress(
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
                                 THEN s.phase_started_at ELSE pg_catalog.now() END,
         iteration_count = s.iteration_count + coalesce(p_iterations, 0),
         tool_calls_count = s.tool_calls_count + coalesce(p_tool_calls, 0),
         tokens_used = s.tokens_used + coalesce(p_tokens, 0),
         total_cost = s.total_cost + coalesce(p_cost, 0),
         last_activity_at = pg_catalog.now(),
         last_event_seq = s.last_event_seq + 1,
         hold_id = v_hold_id
   WHERE s.user_id = v_user_id AND s.id = v_before.id
  RETURNING s.* INTO v_session;

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

CREATE OR REPLACE FUNCTION keen.complete_session(
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
         end_time = GREATEST(pg_catalog.now(), s.start_time),
         current_phase = CASE WHEN p_success THEN 'COMPLETE' ELSE s.current_phase END,
         phase_started_at = CASE WHEN p_success AND s.current_phase <> 'COMPLETE'
                                 THEN pg_catalog.now() ELSE s.phase_started_at END,
         total_cost = v_total,
         files_created = coalesce(p_files_created, '{}'),
         files_modified = coalesce(p_files_modified, '{}'),
         files_deleted = coalesce(p_files_deleted, '{}'),
         completion_report = p_completion_report,
         error_message = p_error_message,
         last_activity_at = pg_catalog.now(),
         last_event_seq = s.last_event_seq + 1
   WHERE s.user_id = v_user_id AND s.id = v_before.id
  RETURNING s.* INTO v_session;
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

CREATE OR REPLACE FUNCTION keen.cancel_session(p_session_id text)
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

CREATE OR REPLACE FUNCTION keen.session_tree(p_session_id text)
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
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  -- Depth-first, each node before its subtree, siblings in the order they were started
  -- (start_seq, drawn at start: siblings started in one transaction share a start_time):
  -- the sort key is the path of big-endian 8-byte start_seq values, compared bytewise (a
  -- prefix sorts first). Children by the parent_session_id index; RLS keeps the tenant's.
  WITH RECURSIVE tree AS (
    SELECT s.id, s.session_id, s.parent_session_id, 0 AS depth,
           ARRAY[s.session_id] AS path,
           pg_catalog.int8send(s.start_seq) AS sort_key,
           s.current_phase, s.execution_status, s.total_cost, s.tokens_used
      FROM keen.agent_sessions AS s
     WHERE s.id = (SELECT keen.session_uuid(p_session_id))
    UNION ALL
    SELECT c.id, c.session_id, c.parent_session_id, t.depth + 1,
           t.path || c.session_id,
           t.sort_key || pg_catalog.int8send(c.start_seq),
           c.current_phase, c.execution_status, c.total_cost, c.tokens_used
      FROM tree AS t
      JOIN keen.agent_sessions AS c ON c.parent_session_id = t.id
  )
  SELECT tree.id, tree.session_id, tree.parent_session_id, tree.depth, tree.path,
         tree.current_phase, tree.execution_status, tree.total_cost, tree.tokens_used
    FROM tree
   ORDER BY tree.sort_key
$$;

CREATE OR REPLACE FUNCTION keen.list_session_events(
  p_after_id   bigint  DEFAULT 0,
  p_session_id text    DEFAULT NULL,
  p_limit      integer DEFAULT 500
)
RETURNS SETOF keen.session_events
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := keen.require_user_id();
  -- Every transaction older than the snapshot's xmin has ended, so its events are final
  -- (visible when committed); an event still to commit belongs to a transaction >= xmin,
  -- so its id is >= xmin * 2^20 (keen.next_session_event_id). Below this horizon the log no
  -- longer changes. The same snapshot as the reads below (a STABLE function): never later.
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

CREATE OR REPLACE FUNCTION keen.session_events_waiting(p_session_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
STABLE
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
  IF p_session_id IS NULL THEN
    RETURN EXISTS (SELECT FROM keen.session_events AS e WHERE e.user_id = v_user_id AND e.id >= v_horizon);
  END IF;
  v_session_uuid := keen.session_uuid(p_session_id);
  RETURN EXISTS (SELECT FROM keen.session_events AS e
                  WHERE e.session_id = v_session_uuid AND e.user_id = v_user_id AND e.id >= v_horizon);
END
$$;

CREATE OR REPLACE FUNCTION keen.prune_session_events(p_older_than interval DEFAULT '30 days')
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_deleted bigint;
BEGIN
  IF p_older_than IS NULL OR p_older_than <= interval '0' THEN
    RAISE EXCEPTION 'invalid argument: retention % is not a positive interval', p_older_than
      USING ERRCODE = 'KE013';
  END IF;
  -- Sessions keep last_event_seq, so numbering continues after a prune; a client whose
  -- cursor is older than the retention must reload the sessions themselves.
  DELETE FROM keen.session_events AS e WHERE e.created_at < pg_catalog.now() - p_older_than;
  GET DIAGNOSTICS v_deleted = ROW_COUNT;
  RETURN v_deleted;
END
$$;

CREATE OR REPLACE FUNCTION keen.open_connection(
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
  IF NOT EXISTS (SELECT FROM keen.users AS u WHERE u.user_id = v_user_id AND u.id = v_user_id) THEN
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
  RETURN v_connection;
END
$$;

CREATE OR REPLACE FUNCTION keen.close_connection(p_connection_id text)
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
  END IF;
  RETURN v_connection;
END
$$;

CREATE OR REPLACE FUNCTION keen.reap_stale_connections(p_idle interval DEFAULT '2 minutes')
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_reaped integer;
BEGIN
  IF p_idle IS NULL OR p_idle <= interval '0' THEN
    RAISE EXCEPTION 'invalid argument: idle time % is not a positive interval', p_idle
      USING ERRCODE = 'KE013';
  END IF;
  -- Across tenants (definer, owner_all policy). Rows being pinged right now are skipped,
  -- not waited for: they are alive.
  WITH stale AS (
    SELECT c.id
      FROM keen.websocket_connections AS c
     WHERE c.connection_status = 'active' AND c.last_ping_at < pg_catalog.now() - p_idle
     ORDER BY c.id
       FOR NO KEY UPDATE SKIP LOCKED
  )
  UPDATE keen.websocket_connections AS c
     SET connection_status = 'stale', disconnected_at = pg_catalog.now()
    FROM stale
   WHERE c.id = stale.id;
  GET DIAGNOSTICS v_reaped = ROW_COUNT;
  RETURN v_reaped;
END
$$;

CREATE FUNCTION keen.tg_agent_sessions__set_depth()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- depth = parent's depth + 1 by construction; the composite foreign key keeps the
  -- parent in the same tenant, and parents are immutable, so no cycle can form.
  IF NEW.parent_session_id IS NULL THEN
    NEW.session_depth := 0;
  ELSE
    SELECT p.session_depth + 1 INTO NEW.session_depth
      FROM keen.agent_sessions AS p
     WHERE p.user_id = NEW.user_id AND p.id = NEW.parent_session_id;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'not found: parent session %', NEW.parent_session_id USING ERRCODE = 'KE006';
    END IF;
  END IF;
  -- Maintained from websocket_connections by its trigger only.
  NEW.websocket_connections := '{}';
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_agent_sessions__check_update()
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
  IF keen.session_phase_rank(NEW.current_phase) < keen.session_phase_rank(OLD.current_phase) THEN
    RAISE EXCEPTION 'invalid state transition: session % cannot go back from phase % to %',
        pg_catalog.quote_literal(OLD.session_id), OLD.current_phase, NEW.current_phase
      USING ERRCODE = 'KE007', HINT = 'Phases move forward only: EXPLORE, PLAN, SUMMON, COMPLETE.';
  END IF;
  IF NEW.iteration_count < OLD.iteration_count OR NEW.tool_calls_count < OLD.tool_calls_count
     OR NEW.tokens_used < OLD.tokens_used OR NEW.last_event_seq < OLD.last_event_seq THEN
    RAISE EXCEPTION 'invalid state transition: the counters of session % only grow', pg_catalog.quote_literal(OLD.session_id)
      USING ERRCODE = 'KE007';
  END IF;
  -- Only the websocket_connections trigger (one trigger level down) writes the list.
  IF NEW.websocket_connections IS DISTINCT FROM OLD.websocket_connections AND pg_catalog.pg_trigger_depth() < 2 THEN
    RAISE EXCEPTION 'invalid argument: agent_sessions.websocket_connections is maintained by the database'
      USING ERRCODE = 'KE013', HINT = 'Use open_connection and close_connection.';
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION keen.tg_session_events__sequence()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- The id is the column default's (keen.next_session_event_id): one of this transaction's.
  IF NEW.id >> 20 IS DISTINCT FROM pg_catalog.pg_current_xact_id()::text::bigint THEN
    RAISE EXCEPTION 'invalid argument: event id % is not one of this transaction''s', NEW.id
      USING ERRCODE = 'KE013', HINT = 'Leave session_events.id to its default.';
  END IF;
  -- The event's number must be the one just taken from its session under the row lock.
  IF NOT EXISTS (SELECT FROM keen.agent_sessions AS s
                  WHERE s.user_id = NEW.user_id AND s.id = NEW.session_id AND s.last_event_seq = NEW.seq) THEN
    RAISE EXCEPTION 'invalid argument: event % of session % is not the session''s last_event_seq', NEW.seq, NEW.session_id
      USING ERRCODE = 'KE013', HINT = 'Append events through the session functions.';
  END IF;
  -- A session's ids follow its seq: a transaction older than the one that wrote the previous
  -- event (it took the session's lock later) would number this one below it. Rare (one call
  -- per transaction never does it); retried like any serialization failure.
  IF EXISTS (SELECT FROM keen.session_events AS p
              WHERE p.user_id = NEW.user_id AND p.session_id = NEW.session_id AND p.seq = NEW.seq - 1
                AND p.id > NEW.id) THEN
    RAISE EXCEPTION 'could not serialize: session % has an event of a younger transaction; retry', NEW.session_id
      USING ERRCODE = '40001', HINT = 'Retry the whole transaction (keen_sql.retry does).';
  END IF;
  NEW.created_at := pg_catalog.now();
  RETURN NEW;
END
$$;

CREATE FUNCTION keen.tg_session_events__notify()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- A wake-up with an empty payload: every login that may connect can LISTEN, so the
  -- payload names no tenant, user, session or event; listeners read their own events
  -- through RLS after their cursor. Equal payloads fold into one per transaction.
  PERFORM pg_catalog.pg_notify('keen_events', '');
  RETURN NULL;
END
$$;

CREATE FUNCTION keen.tg_websocket_connections__sync_session()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END;
  v_session_id uuid;
BEGIN
  FOR v_session_id IN
    SELECT DISTINCT x.id
      FROM (VALUES (CASE WHEN TG_OP <> 'INSERT' THEN OLD.session_id END),
                   (CASE WHEN TG_OP <> 'DELETE' THEN NEW.session_id END)) AS x(id)
     WHERE x.id IS NOT NULL
  LOOP
    -- Lock first, then read in a new statement: its snapshot sees every connection
    -- committed by whoever held the lock before, so concurrent opens and closes of one
    -- session's connections cannot overwrite each other's list.
    PERFORM FROM keen.agent_sessions AS s WHERE s.user_id = v_user_id AND s.id = v_session_id FOR NO KEY UPDATE;
    UPDATE keen.agent_sessions AS s
       SET websocket_connections = ARRAY(
             SELECT c.connection_id FROM keen.websocket_connections AS c
              WHERE c.user_id = v_user_id AND c.session_id = v_session_id AND c.connection_status = 'active'
              ORDER BY c.connection_id)
     WHERE s.user_id = v_user_id AND s.id = v_session_id;
  END LOOP;
  RETURN NULL;
END
$$;

CREATE FUNCTION keen.tg_agent_sessions__track_usage()
RETURNS trigger
LANGUAGE plpgsql
-- Deferred to COMMIT, where it runs as the committing role (keen_app, outside the SECURITY
-- DEFINER function that changed the session): it writes the stats as their owner instead,
-- for the changed row's own user_id.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_deltas keen.usage_delta[];
  v_timezone text;
BEGIN
  SELECT u.timezone INTO v_timezone FROM keen.users AS u
  WHERE u.id = CASE TG_OP WHEN 'DELETE' THEN OLD.user_id ELSE NEW.user_id END;
  IF NOT FOUND THEN
    -- A session deleted with its user (ON DELETE CASCADE): the stats went with the user.
    IF TG_OP = 'DELETE' THEN
      RETURN NULL;
    END IF;
    -- Otherwise as keen.credit_local_date reads it: UTC when the row is not visible.
    v_timezone := 'UTC';
  END IF;
  -- A changed session: take back what the old row counted, add what the new one counts.
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    v_deltas := keen.session_usage(OLD, v_timezone, -1);
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    v_deltas := v_deltas || keen.session_usage(NEW, v_timezone);
  END IF;
  PERFORM keen.add_usage_deltas(v_deltas);
  RETURN NULL;
END
$$;

ALTER TABLE keen.session_events ALTER COLUMN id SET DEFAULT keen.next_session_event_id();

CREATE TRIGGER _010_set_depth BEFORE INSERT ON keen.agent_sessions
  FOR EACH ROW EXECUTE FUNCTION keen.tg_agent_sessions__set_depth();
CREATE TRIGGER _010_sequence BEFORE INSERT ON keen.session_events
  FOR EACH ROW EXECUTE FUNCTION keen.tg_session_events__sequence();
CREATE TRIGGER _900_notify AFTER INSERT ON keen.session_events
  FOR EACH ROW EXECUTE FUNCTION keen.tg_session_events__notify();
CREATE TRIGGER _500_sync_session
  AFTER INSERT OR DELETE OR UPDATE OF session_id, connection_status ON keen.websocket_connections
  FOR EACH ROW EXECUTE FUNCTION keen.tg_websocket_connections__sync_session();
CREATE CONSTRAINT TRIGGER _500_track_usage_stats AFTER INSERT OR DELETE ON keen.agent_sessions
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION keen.tg_agent_sessions__track_usage();
CREATE CONSTRAINT TRIGGER _500_track_usage_stats_update AFTER UPDATE ON keen.agent_sessions
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW
  WHEN (OLD.execution_status IS DISTINCT FROM NEW.execution_status
        OR OLD.tokens_used IS DISTINCT FROM NEW.tokens_used
        OR OLD.tool_calls_count IS DISTINCT FROM NEW.tool_calls_count
        OR OLD.total_cost IS DISTINCT FROM NEW.total_cost
        OR OLD.start_time IS DISTINCT FROM NEW.start_time
        OR OLD.end_time IS DISTINCT FROM NEW.end_time
        OR OLD.user_id IS DISTINCT FROM NEW.user_id)
  EXECUTE FUNCTION keen.tg_agent_sessions__track_usage();

COMMENT ON TABLE keen.session_events IS 'Durable per-session event log; NOTIFY keen_events announces each row.';
COMMENT ON COLUMN keen.agent_sessions.websocket_connections IS
  'connection_id of the active connections following this session, sorted; kept in step by trigger _500_sync_session of websocket_connections, read-only otherwise.';
COMMENT ON FUNCTION keen.append_session_event(keen.agent_sessions, text, jsonb) IS
  'Appends an event numbered with the given (just updated) row''s last_event_seq; returns its id.';
COMMENT ON FUNCTION keen.prune_session_events(interval) IS
  'Operator: deletes events older than p_older_than (default 30 days); returns how many.';
COMMENT ON FUNCTION keen.reap_stale_connections(interval) IS
  'Housekeeping, all tenants (SECURITY DEFINER): marks active connections silent for longer than p_idle stale; returns how many.';
COMMENT ON FUNCTION keen.tg_agent_sessions__check_update() IS
  'Trigger: identity and place in the tree are immutable; running -> completed|failed|cancelled only; phases forward; counters grow; the connection list is the database''s.';
COMMENT ON FUNCTION keen.next_session_event_id() IS
  'Default of session_events.id: this transaction''s id * 2^20 plus its event count (no lock; KE013 past 2^20 events). Not keen_app''s.';
COMMENT ON FUNCTION keen.tg_agent_sessions__set_depth() IS 'Trigger: a new session''s depth is its parent''s + 1; its connection list starts empty.';
COMMENT ON FUNCTION keen.tg_session_events__sequence() IS
  'Trigger: the event id must be one of this transaction''s (keen.next_session_event_id); checks seq against the session''s last_event_seq.';
COMMENT ON FUNCTION keen.tg_session_events__notify() IS 'Trigger: NOTIFY keen_events, an empty wake-up (names no tenant).';
COMMENT ON FUNCTION keen.tg_websocket_connections__sync_session() IS
  'Trigger: recomputes agent_sessions.websocket_connections of the sessions a connection change touches.';
COMMENT ON FUNCTION keen.tg_agent_sessions__track_usage() IS
  'Trigger (deferred to commit): adds a session''s change to daily_usage_stats.';

RESET ROLE;
