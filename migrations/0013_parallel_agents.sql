-- One user's parallel agents (issue 17): events recorded without a per-user lock, a budget
-- enforced while agents run, sessions named by uuid, siblings in start order.
--   * Event ids are the inserting transaction's id * 2^20 plus its event count (trigger
--     _010_sequence, no lock); list_session_events delivers only ids below the horizon
--     xmin(current snapshot) * 2^20, where the log no longer changes, so "after id N" stays
--     gapless and repeat-free while one user's sessions write in parallel. lock_event_stream
--     and the ids' identity sequence go.
--   * A running session's accepted cost is covered by a credit hold tied to it before it is
--     accepted (reserved in chunks of session_limits.budget_chunk); completing captures it.
--   * agent_sessions.start_seq orders siblings started in one transaction; get_session_by_id
--     names the session of an event; session_events_waiting tells a reader to look again.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

-- ===== tables ================================================================
-- squawk-ignore-file adding-not-nullable-field
-- squawk-ignore-file adding-required-field
-- squawk-ignore-file prefer-identity
-- squawk-ignore-file constraint-missing-not-valid
-- Identities: start_seq gets one (only start_session inserts sessions); event ids lose theirs
-- (only the session functions insert events, leaving the id to its new default).
-- squawk-ignore-file ban-alter-identity
-- lock_event_stream goes: only the session functions called it (keen_app may not, since 0009).
-- squawk-ignore-file ban-drop-function

-- Start order for the sessions there are: by start time, then id (the order session_tree
-- used); new sessions draw from the identity. The updated_at trigger stays out of it.
ALTER TABLE keen.agent_sessions ADD COLUMN start_seq bigint;
ALTER TABLE keen.agent_sessions DISABLE TRIGGER _100_set_updated_at;
UPDATE keen.agent_sessions AS s
   SET start_seq = o.n
  FROM (SELECT a.id, pg_catalog.row_number() OVER (ORDER BY a.start_time, a.id) AS n
          FROM keen.agent_sessions AS a) AS o
 WHERE s.id = o.id;
ALTER TABLE keen.agent_sessions ALTER COLUMN start_seq SET NOT NULL;
ALTER TABLE keen.agent_sessions ALTER COLUMN start_seq ADD GENERATED ALWAYS AS IDENTITY;
DO $do$
BEGIN
  PERFORM pg_catalog.setval(pg_catalog.pg_get_serial_sequence('keen.agent_sessions', 'start_seq'),
                            coalesce(max(s.start_seq), 0) + 1, false)
     FROM keen.agent_sessions AS s;
END
$do$;

-- A running session's hold, if it has one already, reserves its accepted cost from now on.
ALTER TABLE keen.agent_sessions ADD COLUMN hold_id uuid;
UPDATE keen.agent_sessions AS s
   SET hold_id = (SELECT h.id FROM keen.credit_holds AS h
                   WHERE h.user_id = s.user_id AND h.session_id = s.id AND h.status = 'active'
                   ORDER BY h.created_at DESC, h.id DESC
                   LIMIT 1)
 WHERE s.execution_status = 'running';
ALTER TABLE keen.agent_sessions ENABLE TRIGGER _100_set_updated_at;

ALTER TABLE keen.session_limits
  ADD COLUMN budget_chunk numeric(12,4) NOT NULL DEFAULT 1,
  ADD CONSTRAINT session_limits_budget_chunk_check CHECK (budget_chunk > 0 AND budget_chunk < 100000000);

-- Event ids no longer come from a sequence. The ids there are stay: they are below every
-- new one (this transaction's id * 2^20), so a client's cursor keeps working.
DO $do$
BEGIN
  IF (SELECT coalesce(max(e.id), 0) FROM keen.session_events AS e)
     >= pg_catalog.pg_current_xact_id()::text::bigint << 20 THEN
    RAISE EXCEPTION 'session_events ids reach past this transaction''s first new id: renumber first';
  END IF;
END
$do$;
ALTER TABLE keen.session_events ALTER COLUMN id DROP IDENTITY;

-- ===== functions =============================================================
CREATE FUNCTION keen.get_session_by_id(p_id uuid)
RETURNS keen.agent_sessions
LANGUAGE plpgsql
STABLE
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

ALTER TABLE keen.session_events ALTER COLUMN id SET DEFAULT keen.next_session_event_id();

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

CREATE FUNCTION keen.session_events_waiting(p_session_id text DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION keen.tg_session_events__sequence()
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

DROP FUNCTION keen.lock_event_stream(uuid);

-- ===== grants ================================================================
GRANT EXECUTE ON FUNCTION
  keen.get_session_by_id(uuid),
  keen.session_events_waiting(text)
TO keen_app;

-- ===== comments ==============================================================
COMMENT ON FUNCTION keen.get_session_by_id(uuid) IS
  'The caller''s session with this uuid id (session_events.session_id names it); KE006 when there is none.';
COMMENT ON FUNCTION keen.next_session_event_id() IS
  'Default of session_events.id: this transaction''s id * 2^20 plus its event count (no lock; KE013 past 2^20 events). Not keen_app''s.';
COMMENT ON FUNCTION keen.add_session_budget(keen.agent_sessions, uuid, numeric) IS
  'Adds p_amount to the session''s budget: onto its active hold (keen.extend_hold) or as a new hold tied to it. Not keen_app''s.';
COMMENT ON FUNCTION keen.reserve_session_budget(keen.agent_sessions, numeric, boolean) IS
  'Makes the session''s hold cover p_needed, extending it by keen.session_limits.budget_chunk (or exactly the shortfall when the chunk is refused); KE001/KE002/KE003 when even that is refused. Returns the hold id. Not keen_app''s.';
COMMENT ON FUNCTION keen.session_events_waiting(text) IS
  'Whether the caller (or one session) has committed events not yet listed because an older transaction is still running: look again shortly.';
COMMENT ON FUNCTION keen.update_session_progress(text, text, integer, integer, bigint, numeric) IS
  'Adds the increments to a running session''s counters and cost and moves its phase forward (KE007 backward or not running, KE013 unknown phase, KE004 bad cost). A cost beyond the session''s hold is reserved first: KE001/KE002/KE003 and nothing written when refused. Event session.progress.';
COMMENT ON FUNCTION keen.complete_session(text, boolean, numeric, text[], text[], text[], jsonb, text) IS
  'Ends a running session as completed or failed, records its files and report, and charges its cost (p_total_cost, else the accumulated total, raised to 4 decimals) in the same transaction by capturing the session''s hold, which covers the accepted cost (a larger final total is reserved first: KE001/KE002/KE003, nothing written), and releases other holds. Idempotent for the same arguments; otherwise KE007 once finished. Event session.completed or session.failed.';
COMMENT ON FUNCTION keen.list_session_events(bigint, text, integer) IS
  'The caller''s events (or one session''s) with id > p_after_id and below keen.list_session_events, in order: the replay of the event stream, gapless without a writer lock.';
COMMENT ON FUNCTION keen.tg_session_events__sequence() IS
  'Trigger: the event id must be one of this transaction''s (keen.next_session_event_id); checks seq against the session''s last_event_seq.';
COMMENT ON COLUMN keen.session_events.id IS
  'Event id: the inserting transaction''s id * 2^20 plus its event number; a listener resumes after one (list_session_events delivers only ids whose transactions are over). Up to 2^63: send it to JavaScript as a string.';
COMMENT ON COLUMN keen.agent_sessions.start_seq IS 'Start order across the whole database (siblings started in one transaction share start_time).';
COMMENT ON COLUMN keen.agent_sessions.hold_id IS 'The credit hold reserving the session''s accepted cost (credit_holds.id); NULL before its first cost.';
COMMENT ON COLUMN keen.session_limits.budget_chunk IS 'Credits a running session reserves at a time beyond its accepted cost, so most progress reports do not lock the account.';

RESET ROLE;
