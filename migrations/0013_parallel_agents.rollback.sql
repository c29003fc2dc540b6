-- Roll back 0013_parallel_agents: the per-user event-stream lock and the identity event
-- ids again, the session functions as before, no session budget holds of their own.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

CREATE FUNCTION keen.lock_event_stream(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Only the tenant's own stream, and only in its own context (KE010 without one): no
  -- transaction can stall another tenant's events. Not executable by keen_app: the
  -- SECURITY DEFINER session functions call it.
  IF p_user_id IS DISTINCT FROM keen.require_user_id() THEN
    RAISE EXCEPTION 'event stream not found: %', p_user_id
      USING ERRCODE = 'KE006', HINT = 'A transaction may lock only its own tenant''s event stream.';
  END IF;
  -- Held until commit: one transaction at a time appends to a user's event log, so the
  -- user's event ids are assigned in commit order and "after id N" never skips a late
  -- commit. The lock is the user's own row (NO KEY UPDATE: foreign-key checks pass), which
  -- keen_app cannot lock (it holds no UPDATE privilege), unlike an advisory key.
  PERFORM FROM keen.users AS u WHERE u.user_id = p_user_id AND u.id = p_user_id FOR NO KEY UPDATE;
END
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
  PERFORM keen.lock_event_stream(v_user_id);

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
  PERFORM keen.lock_event_stream(v_user_id);
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
         last_event_seq = s.last_event_seq + 1
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
  v_hold_amount numeric;
  v_captured numeric := 0;
  v_capture_id uuid;
  v_deduct_id uuid;
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
  PERFORM keen.lock_event_stream(v_user_id);
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
  SELECT h.id, h.amount INTO v_hold_id, v_hold_amount
    FROM keen.credit_holds AS h
   WHERE h.user_id = v_user_id AND h.session_id = v_before.id AND h.status = 'active'
     AND h.expires_at > pg_catalog.now()
   ORDER BY h.created_at, h.id
   LIMIT 1;
  IF v_hold_id IS NOT NULL AND v_charge > 0 THEN
    -- A capture takes at most the hold; the rest is deducted below.
    v_captured := LEAST(v_charge, v_hold_amount);
    SELECT t.id INTO v_capture_id
      FROM keen.capture_hold(p_hold_id => v_hold_id, p_amount => v_captured,
                             p_description => 'agent session ' || p_session_id) AS t;
  END IF;
  IF v_charge > v_captured THEN
    -- The key makes a replayed completion (or a concurrent one) charge once.
    SELECT t.id INTO v_deduct_id
      FROM keen.deduct_credits(p_amount => v_charge - v_captured, p_session_id => v_before.id,
                               p_description => 'agent session ' || p_session_id,
                               p_idempotency_key => 'session:' || v_before.id::text) AS t;
  END IF;
  -- Holds the session no longer needs go back to the available balance.
  FOR v_hold_id IN
    SELECT h.id FROM keen.credit_holds AS h
     WHERE h.user_id = v_user_id AND h.session_id = v_before.id AND h.status = 'active'
     ORDER BY h.created_at, h.id
  LOOP
    PERFORM keen.release_hold(p_hold_id => v_hold_id);
  END LOOP;

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

  PERFORM keen.append_session_event(v_session, 'session.' || v_status, pg_catalog.jsonb_build_object(
    'total_cost', v_total,
    'charged', v_charge,
    'capture_transaction_id', v_capture_id,
    'usage_transaction_id', v_deduct_id,
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
  v_hold_id uuid;
BEGIN
  PERFORM keen.lock_event_stream(v_user_id);
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
      -- A cancelled session charges nothing: its holds go back to the available balance.
      FOR v_hold_id IN
        SELECT h.id FROM keen.credit_holds AS h
         WHERE h.user_id = v_user_id AND h.session_id = v_row.id AND h.status = 'active'
         ORDER BY h.created_at, h.id
      LOOP
        PERFORM keen.release_hold(p_hold_id => v_hold_id);
      END LOOP;
      IF v_row.id = v_session.id THEN
        v_cancelled := v_row;
      END IF;
    END LOOP;
    SELECT pg_catalog.array_agg(s.id ORDER BY s.id) INTO v_level
      FROM keen.agent_sessions AS s
     WHERE s.user_id = v_user_id AND s.parent_session_id = ANY (v_level);
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
  -- Depth-first, each node before its subtree, siblings in the order they started
  -- (start_time, then id): the sort key is the path of fixed-width 24-byte elements,
  -- big-endian microseconds since 1970 then the uuid's bytes, compared bytewise (a prefix
  -- sorts first). Cheaper than text keys: about half the cost on 10,000 nodes.
  WITH RECURSIVE tree AS (
    SELECT s.id, s.session_id, s.parent_session_id, 0 AS depth,
           ARRAY[s.session_id] AS path,
           pg_catalog.int8send((EXTRACT(EPOCH FROM s.start_time) * 1000000)::bigint)
             || pg_catalog.uuid_send(s.id) AS sort_key,
           s.current_phase, s.execution_status, s.total_cost, s.tokens_used
      FROM keen.agent_sessions AS s
     WHERE s.id = (SELECT keen.session_uuid(p_session_id))
    UNION ALL
    SELECT c.id, c.session_id, c.parent_session_id, t.depth + 1,
           t.path || c.session_id,
           t.sort_key || pg_catalog.int8send((EXTRACT(EPOCH FROM c.start_time) * 1000000)::bigint)
             || pg_catalog.uuid_send(c.id),
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
  v_session_uuid uuid;
BEGIN
  -- NULL stands for the default, so bindings may pass every optional argument.
  IF coalesce(p_after_id, 0) < 0 THEN
    RAISE EXCEPTION 'invalid argument: event cursor % is not >= 0', p_after_id USING ERRCODE = 'KE013';
  END IF;
  IF coalesce(p_limit, 500) NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'invalid argument: page size % is not between 1 and 10000', p_limit USING ERRCODE = 'KE013';
  END IF;
  -- A user's event ids follow commit order (keen.lock_event_stream), so "id > cursor"
  -- misses nothing committed later and repeats nothing.
  IF p_session_id IS NULL THEN
    RETURN QUERY
      SELECT e.* FROM keen.session_events AS e
       WHERE e.user_id = v_user_id AND e.id > coalesce(p_after_id, 0)
       ORDER BY e.id
       LIMIT coalesce(p_limit, 500);
  ELSE
    v_session_uuid := keen.session_uuid(p_session_id);
    RETURN QUERY
      SELECT e.* FROM keen.session_events AS e
       WHERE e.session_id = v_session_uuid AND e.user_id = v_user_id AND e.id > coalesce(p_after_id, 0)
       ORDER BY e.id
       LIMIT coalesce(p_limit, 500);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION keen.tg_session_events__sequence()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Whoever inserts, the id is drawn under the user's stream lock (the column default
  -- was evaluated before it), so a user's ids follow commit order.
  PERFORM keen.lock_event_stream(NEW.user_id);
  NEW.id := pg_catalog.nextval('keen.session_events_id_seq'::regclass);
  -- The event's number must be the one just taken from its session under the row lock.
  IF NOT EXISTS (SELECT FROM keen.agent_sessions AS s
                  WHERE s.id = NEW.session_id AND s.user_id = NEW.user_id AND s.last_event_seq = NEW.seq) THEN
    RAISE EXCEPTION 'invalid argument: event % of session % is not the session''s last_event_seq', NEW.seq, NEW.session_id
      USING ERRCODE = 'KE013', HINT = 'Append events through the session functions.';
  END IF;
  NEW.created_at := pg_catalog.now();
  RETURN NEW;
END
$$;

DROP FUNCTION keen.session_events_waiting(text);
DROP FUNCTION keen.reserve_session_budget(keen.agent_sessions, numeric, boolean);
DROP FUNCTION keen.add_session_budget(keen.agent_sessions, uuid, numeric);
ALTER TABLE keen.session_events ALTER COLUMN id DROP DEFAULT;
DROP FUNCTION keen.next_session_event_id();
DROP FUNCTION keen.get_session_by_id(uuid);

-- squawk-ignore-file ban-drop-column
-- Ids drawn from a sequence again, above every id there is.
ALTER TABLE keen.session_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;
DO $do$
BEGIN
  PERFORM pg_catalog.setval(pg_catalog.pg_get_serial_sequence('keen.session_events', 'id'),
                            coalesce(max(e.id), 0) + 1, false)
     FROM keen.session_events AS e;
END
$do$;
ALTER TABLE keen.session_limits DROP CONSTRAINT session_limits_budget_chunk_check, DROP COLUMN budget_chunk;
ALTER TABLE keen.agent_sessions DROP COLUMN hold_id, DROP COLUMN start_seq;

REVOKE ALL ON SEQUENCE keen.session_events_id_seq FROM keen_app;

COMMENT ON FUNCTION keen.lock_event_stream(uuid) IS
  'Takes the user''s event-stream lock until commit, so the user''s event ids follow commit order.';
COMMENT ON FUNCTION keen.update_session_progress(text, text, integer, integer, bigint, numeric) IS
  'Adds the increments to a running session''s counters and cost and moves its phase forward (KE007 backward or not running, KE013 unknown phase, KE004 bad cost). Event session.progress.';
COMMENT ON FUNCTION keen.complete_session(text, boolean, numeric, text[], text[], text[], jsonb, text) IS
  'Ends a running session as completed or failed, records its files and report, and charges its cost (p_total_cost, else the accumulated total, raised to 4 decimals) in the same transaction: captures its active hold, deducts the rest with key session:<id>, releases other holds. Idempotent for the same arguments; otherwise KE007 once finished. Event session.completed or session.failed.';
COMMENT ON FUNCTION keen.list_session_events(bigint, text, integer) IS
  'The caller''s events (or one session''s) with id > p_after_id, in order: the replay of the event stream.';
COMMENT ON FUNCTION keen.tg_session_events__sequence() IS
  'Trigger: draws the event id under the user''s stream lock and checks seq against the session''s last_event_seq.';
COMMENT ON COLUMN keen.session_events.id IS 'Global event id; a user''s ids follow commit order, so a listener resumes after one.';

RESET ROLE;
