-- Usage analytics: per-user daily figures kept in step by triggers, the tenant's own
-- reports, and the operators' dashboard as a materialized view.
--
-- Attribution (one definition, keen.session_usage and keen.ledger_usage, serves the
-- triggers, keen.verify_usage_stats and keen.rebuild_usage_stats):
--   * the day is the user's own calendar day (users.timezone, the same rule as the daily
--     spending limit); a change of time zone re-buckets the user's history;
--   * a session counts as started, and its tokens, tool calls and cost count, on the day it
--     started; it counts as completed, failed or cancelled on the day it ended;
--   * a ledger row counts on the day it was written: purchase → credits_purchased,
--     usage → credits_spent (= -amount), refund → credits_refunded, adjustment →
--     credits_adjusted (signed).
SET ROLE keen_owner;

-- ===== types =================================================================
CREATE TYPE keen.usage_delta AS (
  user_id             uuid,
  date_bucket         date,
  sessions_started    bigint,
  sessions_completed  bigint,
  sessions_failed     bigint,
  sessions_cancelled  bigint,
  tokens_used         bigint,
  tool_calls          bigint,
  total_cost          numeric,
  credits_purchased   numeric,
  credits_spent       numeric,
  credits_refunded    numeric,
  credits_adjusted    numeric
);

-- The counts rule of a day's statistics row (daily_usage_stats_counts_check): none negative.
-- A function for the reason given at keen.credit_accounts_row_ok (migration 0021).
CREATE FUNCTION keen.daily_usage_stats_counts_ok(
  p_sessions_started integer, p_sessions_completed integer, p_sessions_failed integer,
  p_sessions_cancelled integer, p_tokens_used bigint, p_tool_calls bigint,
  p_total_cost numeric, p_credits_purchased numeric, p_credits_spent numeric,
  p_credits_refunded numeric)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN p_sessions_started >= 0 AND p_sessions_completed >= 0 AND p_sessions_failed >= 0
    AND p_sessions_cancelled >= 0 AND p_tokens_used >= 0 AND p_tool_calls >= 0
    AND p_total_cost >= 0 AND p_credits_purchased >= 0 AND p_credits_spent >= 0
    AND p_credits_refunded >= 0;
END
$$;
COMMENT ON FUNCTION keen.daily_usage_stats_counts_ok(integer, integer, integer, integer, bigint, bigint,
  numeric, numeric, numeric, numeric) IS
  'The rule of a daily_usage_stats row (its CHECK daily_usage_stats_counts_check): no count negative.';

-- ===== tables ================================================================
CREATE TABLE keen.daily_usage_stats (
  user_id             uuid          NOT NULL,
  date_bucket         date          NOT NULL,
  sessions_started    integer       NOT NULL DEFAULT 0,
  sessions_completed  integer       NOT NULL DEFAULT 0,
  sessions_failed     integer       NOT NULL DEFAULT 0,
  sessions_cancelled  integer       NOT NULL DEFAULT 0,
  tokens_used         bigint        NOT NULL DEFAULT 0,
  tool_calls          bigint        NOT NULL DEFAULT 0,
  total_cost          numeric(16,6) NOT NULL DEFAULT 0,
  credits_purchased   numeric(16,4) NOT NULL DEFAULT 0,
  credits_spent       numeric(16,4) NOT NULL DEFAULT 0,
  credits_refunded    numeric(16,4) NOT NULL DEFAULT 0,
  -- Adjustments go either way: the day's net adjustment, signed.
  credits_adjusted    numeric(16,4) NOT NULL DEFAULT 0,
  updated_at          timestamptz   NOT NULL DEFAULT now(),
  CONSTRAINT daily_usage_stats_pkey PRIMARY KEY (user_id, date_bucket),
  CONSTRAINT daily_usage_stats_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  CONSTRAINT daily_usage_stats_counts_check CHECK (keen.daily_usage_stats_counts_ok(
    sessions_started, sessions_completed, sessions_failed, sessions_cancelled, tokens_used,
    tool_calls, total_cost, credits_purchased, credits_spent, credits_refunded))
)
-- Every ledger entry and session change updates its (user, day) row: free room on each page
-- lets that update stay on the page (HOT), without a new primary-key entry (migration 0020;
-- at the default fillfactor almost none did, bench/credits/REPORT.md).
WITH (fillfactor = 50);

-- Session changes waiting for COMMIT: the session functions queue each change of a session
-- (keen.track_session_usage), and the queue's deferred trigger adds it to daily_usage_stats
-- at commit and deletes the row, so the table is empty outside transactions. No user_id
-- column, not a tenant table: on Citus it stays on the coordinator (like dashboard_metrics),
-- and its trigger runs there, where the session functions run, not on a worker's shard.
CREATE TABLE keen.session_usage_queue (
  id          uuid                NOT NULL DEFAULT gen_random_uuid(),
  before_row  keen.agent_sessions,
  after_row   keen.agent_sessions NOT NULL,
  CONSTRAINT session_usage_queue_pkey PRIMARY KEY (id)
);

-- ===== materialized views ====================================================
-- Hourly buckets (UTC hours, whatever the refresher's TimeZone) over the last 24 hours,
-- the current partial hour included. Materialized views are outside RLS: only
-- keen_analytics may read it, and its owner keen_owner reads the tables through the
-- owner_all policies (a view refreshed by a role under forced RLS would silently be empty).
CREATE MATERIALIZED VIEW keen.dashboard_metrics AS
WITH bounds AS (
  SELECT pg_catalog.date_trunc('hour', pg_catalog.now(), 'UTC') - interval '23 hours' AS since
), hours AS (
  SELECT h AS hour_bucket
  FROM bounds AS b,
       pg_catalog.generate_series(b.since, b.since + interval '23 hours', interval '1 hour') AS h
), started AS (
  SELECT pg_catalog.date_trunc('hour', s.start_time, 'UTC') AS hour_bucket,
         pg_catalog.count(*) AS sessions_started
  FROM keen.agent_sessions AS s, bounds AS b
  WHERE s.start_time >= b.since
  GROUP BY 1
), ended AS (
  SELECT pg_catalog.date_trunc('hour', s.end_time, 'UTC') AS hour_bucket,
         pg_catalog.count(*) FILTER (WHERE s.execution_status = 'completed') AS sessions_completed,
         pg_catalog.count(*) FILTER (WHERE s.execution_status = 'failed') AS sessions_failed,
         pg_catalog.count(*) FILTER (WHERE s.execution_status = 'cancelled') AS sessions_cancelled,
         pg_catalog.round(pg_catalog.avg(s.total_cost) FILTER (WHERE s.execution_status = 'completed'), 6) AS avg_cost,
         pg_catalog.sum(s.total_cost) AS total_cost,
         pg_catalog.sum(s.tokens_used) AS tokens_used,
         pg_catalog.percentile_cont(0.5) WITHIN GROUP (
           ORDER BY pg_catalog.date_part('epoch', s.end_time - s.start_time)) AS p50_duration_seconds,
         pg_catalog.percentile_cont(0.95) WITHIN GROUP (
           ORDER BY pg_catalog.date_part('epoch', s.end_time - s.start_time)) AS p95_duration_seconds
  FROM keen.agent_sessions AS s, bounds AS b
  WHERE s.end_time >= b.since
  GROUP BY 1
), active AS (
  -- Each session still running or ended inside the window, spread over the hours it ran in.
  SELECT h AS hour_bucket, pg_catalog.count(DISTINCT s.user_id) AS active_users
  FROM keen.agent_sessions AS s, bounds AS b,
       pg_catalog.generate_series(
         GREATEST(pg_catalog.date_trunc('hour', s.start_time, 'UTC'), b.since),
         pg_catalog.date_trunc('hour', coalesce(s.end_time, pg_catalog.now()), 'UTC'),
         interval '1 hour') AS h
  WHERE s.end_time IS NULL OR s.end_time >= b.since
  GROUP BY 1
), credits AS (
  SELECT pg_catalog.date_trunc('hour', t.created_at, 'UTC') AS hour_bucket,
         pg_catalog.sum(t.amount) FILTER (WHERE t.transaction_type = 'purchase') AS credits_sold,
         -pg_catalog.sum(t.amount) FILTER (WHERE t.transaction_type = 'usage') AS credits_spent,
         pg_catalog.sum(t.amount) FILTER (WHERE t.transaction_type = 'refund') AS credits_refunded
  FROM keen.credit_transactions AS t, bounds AS b
  WHERE t.created_at >= b.since
  GROUP BY 1
)
SELECT h.hour_bucket,
       coalesce(st.sessions_started, 0) AS sessions_started,
       coalesce(en.sessions_completed, 0) AS sessions_completed,
       coalesce(en.sessions_failed, 0) AS sessions_failed,
       coalesce(en.sessions_cancelled, 0) AS sessions_cancelled,
       coalesce(ac.active_users, 0) AS active_users,
       en.avg_cost,
       coalesce(en.total_cost, 0) AS total_cost,
       coalesce(en.tokens_used, 0) AS tokens_used,
       coalesce(cr.credits_sold, 0) AS credits_sold,
       coalesce(cr.credits_spent, 0) AS credits_spent,
       coalesce(cr.credits_refunded, 0) AS credits_refunded,
       en.p50_duration_seconds,
       en.p95_duration_seconds,
       pg_catalog.now() AS refreshed_at
FROM hours AS h
LEFT JOIN started AS st USING (hour_bucket)
LEFT JOIN ended AS en USING (hour_bucket)
LEFT JOIN active AS ac USING (hour_bucket)
LEFT JOIN credits AS cr USING (hour_bucket)
WITH NO DATA;

-- ===== indexes ===============================================================
-- REFRESH … CONCURRENTLY needs a unique index.
CREATE UNIQUE INDEX dashboard_metrics_hour_bucket_key ON keen.dashboard_metrics (hour_bucket);
-- The dashboard's windows: sessions started, sessions ended or still running (NULL
-- end_time, also in this index), ledger rows of the last 24 hours.
CREATE INDEX agent_sessions_start_time_idx ON keen.agent_sessions (start_time);
CREATE INDEX agent_sessions_end_time_idx ON keen.agent_sessions (end_time);
-- The ledger is appended in time order, so a BRIN index (each range of 128 pages keeps its
-- earliest and latest created_at) finds the last 24 hours: an entry adds nothing to it until
-- its range is summarized by autovacuum, where a B-tree took one more entry per ledger row
-- (migration 0020). Ranges not yet summarized are always read: the window stays exact.
CREATE INDEX credit_transactions_created_at_idx ON keen.credit_transactions USING brin (created_at)
  WITH (autosummarize = on);

-- ===== functions =============================================================
-- The attribution rule, in two small PL/pgSQL functions returning arrays: plpgsql keeps its
-- plans across calls (a LANGUAGE sql function with SET search_path is re-planned in every
-- trigger call: 160 µs against 5 µs here), and an array needs no tuplestore.
CREATE FUNCTION keen.session_usage(p_session keen.agent_sessions, p_timezone text, p_sign integer DEFAULT 1)
RETURNS keen.usage_delta[]
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- Started, tokens, tool calls and cost count on the start day.
  v_started keen.usage_delta := ROW(
    p_session.user_id, (p_session.start_time AT TIME ZONE p_timezone)::date,
    p_sign, 0, 0, 0, p_sign * p_session.tokens_used, p_sign * p_session.tool_calls_count,
    p_sign * p_session.total_cost, 0, 0, 0, 0);
BEGIN
  IF p_session.end_time IS NULL THEN
    RETURN ARRAY[v_started];
  END IF;
  -- The outcome counts on the end day.
  RETURN ARRAY[v_started, ROW(
    p_session.user_id, (p_session.end_time AT TIME ZONE p_timezone)::date, 0,
    CASE p_session.execution_status WHEN 'completed' THEN p_sign ELSE 0 END,
    CASE p_session.execution_status WHEN 'failed' THEN p_sign ELSE 0 END,
    CASE p_session.execution_status WHEN 'cancelled' THEN p_sign ELSE 0 END,
    0, 0, 0, 0, 0, 0, 0)::keen.usage_delta];
END
$$;

CREATE FUNCTION keen.ledger_usage(p_entry keen.credit_transactions, p_timezone text)
RETURNS keen.usage_delta[]
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN ARRAY[ROW(
    p_entry.user_id, (p_entry.created_at AT TIME ZONE p_timezone)::date, 0, 0, 0, 0, 0, 0, 0,
    CASE p_entry.transaction_type WHEN 'purchase' THEN p_entry.amount ELSE 0 END,
    CASE p_entry.transaction_type WHEN 'usage' THEN -p_entry.amount ELSE 0 END,
    CASE p_entry.transaction_type WHEN 'refund' THEN p_entry.amount ELSE 0 END,
    CASE p_entry.transaction_type WHEN 'adjustment' THEN p_entry.amount ELSE 0 END)::keen.usage_delta];
END
$$;

CREATE FUNCTION keen.recompute_usage_stats(p_user_id uuid DEFAULT NULL)
RETURNS SETOF keen.usage_delta
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_user_id uuid;
  v_timezone text;
  v_sessions keen.agent_sessions[];
  v_entries keen.credit_transactions[];
BEGIN
  IF p_user_id IS NULL THEN
    -- Every tenant, one at a time (Citus-ready: each recomputation reads one shard).
    FOR v_user_id IN
      -- all tenants: lists the tenants (read only); each is recomputed below by its own id.
      SELECT u.id FROM keen.users AS u ORDER BY u.id
    LOOP
      RETURN QUERY SELECT e.* FROM keen.recompute_usage_stats(v_user_id) AS e;
    END LOOP;
    RETURN;
  END IF;
  SELECT u.timezone INTO v_timezone FROM keen.users AS u WHERE u.id = p_user_id;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  -- The tenant's sessions and ledger rows are read by user_id (one shard on Citus) into
  -- arrays first: the attribution rule (keen.session_usage, keen.ledger_usage) then runs where
  -- this function runs, never inside a query on a shard, where the functions do not exist
  -- (and a row is of the shard's own type).
  SELECT pg_catalog.array_agg(s) INTO v_sessions FROM keen.agent_sessions AS s WHERE s.user_id = p_user_id;
  SELECT pg_catalog.array_agg(t) INTO v_entries FROM keen.credit_transactions AS t WHERE t.user_id = p_user_id;
  RETURN QUERY
  SELECT d.user_id, d.date_bucket,
         pg_catalog.sum(d.sessions_started)::bigint, pg_catalog.sum(d.sessions_completed)::bigint,
         pg_catalog.sum(d.sessions_failed)::bigint, pg_catalog.sum(d.sessions_cancelled)::bigint,
         pg_catalog.sum(d.tokens_used)::bigint, pg_catalog.sum(d.tool_calls)::bigint,
         pg_catalog.sum(d.total_cost), pg_catalog.sum(d.credits_purchased),
         pg_catalog.sum(d.credits_spent), pg_catalog.sum(d.credits_refunded),
         pg_catalog.sum(d.credits_adjusted)
  FROM (
    SELECT x.*
    FROM pg_catalog.unnest(v_sessions) AS s
    CROSS JOIN LATERAL pg_catalog.unnest(keen.session_usage(s, v_timezone)) AS x
    UNION ALL
    SELECT x.*
    FROM pg_catalog.unnest(v_entries) AS t
    CROSS JOIN LATERAL pg_catalog.unnest(keen.ledger_usage(t, v_timezone)) AS x
  ) AS d
  GROUP BY d.user_id, d.date_bucket;
END
$$;

CREATE FUNCTION keen.rebuild_usage_stats(p_user_id uuid DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
-- JIT compilation costs more than it saves on these queries (1.3 s on 2 cores).
SET jit = off
AS $$
DECLARE
  v_user_id uuid;
  v_now timestamptz := pg_catalog.now();
  v_expected keen.usage_delta[];
  v_days date[];
  v_row keen.usage_delta;
  v_count bigint;
  v_changed bigint := 0;
BEGIN
  IF p_user_id IS NULL THEN
    -- Every tenant, one at a time (Citus-ready: each rebuild locks and writes one tenant).
    FOR v_user_id IN
      -- all tenants: lists the tenants (read only); each is rebuilt below under its own locks.
      SELECT u.id FROM keen.users AS u ORDER BY u.id
    LOOP
      v_changed := v_changed + keen.rebuild_usage_stats(v_user_id);
    END LOOP;
    RETURN v_changed;
  END IF;
  -- Holds off the tenant's figure writers until this transaction ends, and waits for those
  -- in flight, so the recomputation below sees every committed change and a change committed
  -- later adds its delta on top of the rebuilt figures: the user's row FOR UPDATE conflicts
  -- with the FOR KEY SHARE lock that the foreign key check of every new daily_usage_stats
  -- row takes, and the tenant's existing rows are locked themselves.
  PERFORM FROM keen.users AS u WHERE u.id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  PERFORM FROM keen.daily_usage_stats AS d WHERE d.user_id = p_user_id FOR UPDATE;
  v_expected := ARRAY(SELECT e FROM keen.recompute_usage_stats(p_user_id) AS e ORDER BY e.date_bucket);
  -- The days as a date[] (keen.usage_delta does not exist on a Citus worker).
  v_days := ARRAY(SELECT e.date_bucket FROM pg_catalog.unnest(v_expected) AS e);
  -- Days that no longer have any activity are zeroed rather than deleted (the service role
  -- has no DELETE); a missing row and a row of zeros mean the same.
  UPDATE keen.daily_usage_stats AS d
  SET sessions_started = 0, sessions_completed = 0, sessions_failed = 0, sessions_cancelled = 0,
      tokens_used = 0, tool_calls = 0, total_cost = 0, credits_purchased = 0,
      credits_spent = 0, credits_refunded = 0, credits_adjusted = 0,
      updated_at = v_now
  WHERE d.user_id = p_user_id
    AND d.date_bucket <> ALL (v_days)
    AND (d.sessions_started, d.sessions_completed, d.sessions_failed, d.sessions_cancelled,
         d.tokens_used, d.tool_calls, d.total_cost, d.credits_purchased, d.credits_spent,
         d.credits_refunded, d.credits_adjusted) <> (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_changed := v_count;
  -- One row at a time, each INSERT routed to the tenant's shard (an INSERT … SELECT would run
  -- through the Citus coordinator, which neither counts the rows it leaves alone nor plans it
  -- from PL/pgSQL's generic plan), in key order.
  FOREACH v_row IN ARRAY v_expected
  LOOP
    INSERT INTO keen.daily_usage_stats AS d
      (user_id, date_bucket, sessions_started, sessions_completed, sessions_failed,
       sessions_cancelled, tokens_used, tool_calls, total_cost, credits_purchased,
       credits_spent, credits_refunded, credits_adjusted, updated_at)
    VALUES (p_user_id, v_row.date_bucket, v_row.sessions_started, v_row.sessions_completed,
            v_row.sessions_failed, v_row.sessions_cancelled, v_row.tokens_used, v_row.tool_calls,
            v_row.total_cost, v_row.credits_purchased, v_row.credits_spent, v_row.credits_refunded,
            v_row.credits_adjusted, v_now)
    ON CONFLICT (user_id, date_bucket) DO UPDATE
    SET sessions_started = EXCLUDED.sessions_started,
        sessions_completed = EXCLUDED.sessions_completed,
        sessions_failed = EXCLUDED.sessions_failed,
        sessions_cancelled = EXCLUDED.sessions_cancelled,
        tokens_used = EXCLUDED.tokens_used,
        tool_calls = EXCLUDED.tool_calls,
        total_cost = EXCLUDED.total_cost,
        credits_purchased = EXCLUDED.credits_purchased,
        credits_spent = EXCLUDED.credits_spent,
        credits_refunded = EXCLUDED.credits_refunded,
        credits_adjusted = EXCLUDED.credits_adjusted,
        updated_at = EXCLUDED.updated_at
    -- Rows already right are left alone (no dead tuple, no new updated_at).
    WHERE (d.sessions_started, d.sessions_completed, d.sessions_failed, d.sessions_cancelled,
           d.tokens_used, d.tool_calls, d.total_cost, d.credits_purchased, d.credits_spent,
           d.credits_refunded, d.credits_adjusted)
          IS DISTINCT FROM
          (EXCLUDED.sessions_started, EXCLUDED.sessions_completed, EXCLUDED.sessions_failed,
           EXCLUDED.sessions_cancelled, EXCLUDED.tokens_used, EXCLUDED.tool_calls,
           EXCLUDED.total_cost, EXCLUDED.credits_purchased, EXCLUDED.credits_spent,
           EXCLUDED.credits_refunded, EXCLUDED.credits_adjusted);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_changed := v_changed + v_count;
  END LOOP;
  RETURN v_changed;
END
$$;

CREATE FUNCTION keen.verify_usage_stats()
RETURNS TABLE (user_id uuid, date_bucket date, figure text, recorded numeric, expected numeric)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
-- JIT compilation costs more than it saves on these queries (1.3 s on 2 cores).
SET jit = off
AS $$
DECLARE
  v_user_id uuid;
  v_recorded keen.daily_usage_stats[];
BEGIN
  -- Every tenant, one at a time (Citus-ready: each comparison reads one shard), in user order.
  FOR v_user_id IN
    -- all tenants: lists the tenants (read only); each is compared below by its own id.
    SELECT u.id FROM keen.users AS u ORDER BY u.id
  LOOP
    -- The recorded rows are read first (one shard), then compared here with the
    -- recomputation (which cannot run inside a query on a shard).
    SELECT pg_catalog.array_agg(d) INTO v_recorded FROM keen.daily_usage_stats AS d WHERE d.user_id = v_user_id;
    RETURN QUERY
    SELECT v_user_id, coalesce(r.date_bucket, e.date_bucket), f.figure, f.recorded, f.expected
    FROM pg_catalog.unnest(v_recorded) AS r
    FULL JOIN keen.recompute_usage_stats(v_user_id) AS e ON e.date_bucket = r.date_bucket
    CROSS JOIN LATERAL (VALUES
      ('sessions_started', coalesce(r.sessions_started, 0), coalesce(e.sessions_started, 0)),
      ('sessions_completed', coalesce(r.sessions_completed, 0), coalesce(e.sessions_completed, 0)),
      ('sessions_failed', coalesce(r.sessions_failed, 0), coalesce(e.sessions_failed, 0)),
      ('sessions_cancelled', coalesce(r.sessions_cancelled, 0), coalesce(e.sessions_cancelled, 0)),
      ('tokens_used', coalesce(r.tokens_used, 0), coalesce(e.tokens_used, 0)),
      ('tool_calls', coalesce(r.tool_calls, 0), coalesce(e.tool_calls, 0)),
      ('total_cost', coalesce(r.total_cost, 0), coalesce(e.total_cost, 0)),
      ('credits_purchased', coalesce(r.credits_purchased, 0), coalesce(e.credits_purchased, 0)),
      ('credits_spent', coalesce(r.credits_spent, 0), coalesce(e.credits_spent, 0)),
      ('credits_refunded', coalesce(r.credits_refunded, 0), coalesce(e.credits_refunded, 0)),
      ('credits_adjusted', coalesce(r.credits_adjusted, 0), coalesce(e.credits_adjusted, 0))
    ) AS f(figure, recorded, expected)
    WHERE f.recorded <> f.expected
    ORDER BY 2, 3;
  END LOOP;
END
$$;

CREATE FUNCTION keen.usage_report(p_from date, p_to date)
RETURNS TABLE (
  date_bucket date, sessions_started integer, sessions_completed integer,
  sessions_failed integer, sessions_cancelled integer, tokens_used bigint, tool_calls bigint,
  total_cost numeric, credits_purchased numeric, credits_spent numeric,
  credits_refunded numeric, credits_adjusted numeric)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid;
BEGIN
  v_user_id := keen.require_user_id();
  IF p_from IS NULL OR p_to IS NULL OR NOT pg_catalog.isfinite(p_from) OR NOT pg_catalog.isfinite(p_to)
     OR p_from > p_to OR p_to - p_from > 365 THEN
    RAISE EXCEPTION 'invalid report range: % to %', p_from, p_to
      USING ERRCODE = 'KE013',
            DETAIL = 'Both days are required and finite, p_from <= p_to, at most 366 days inclusive.',
            HINT = 'Ask for a year or less at a time.';
  END IF;
  -- Every day of the range, zeros where the user had no activity; the explicit user_id
  -- filter and RLS both keep it to the caller's rows.
  RETURN QUERY
  SELECT p_from + g.i,
         coalesce(s.sessions_started, 0), coalesce(s.sessions_completed, 0),
         coalesce(s.sessions_failed, 0), coalesce(s.sessions_cancelled, 0),
         coalesce(s.tokens_used, 0::bigint), coalesce(s.tool_calls, 0::bigint),
         coalesce(s.total_cost, 0)::numeric, coalesce(s.credits_purchased, 0)::numeric,
         coalesce(s.credits_spent, 0)::numeric, coalesce(s.credits_refunded, 0)::numeric,
         coalesce(s.credits_adjusted, 0)::numeric
  FROM pg_catalog.generate_series(0, p_to - p_from) AS g(i)
  LEFT JOIN keen.daily_usage_stats AS s
    ON s.user_id = v_user_id AND s.date_bucket = p_from + g.i
  ORDER BY g.i;
END
$$;

CREATE FUNCTION keen.session_cost_breakdown(p_session_id text)
RETURNS TABLE (
  id uuid, session_id text, parent_session_id uuid, depth integer, path text[],
  execution_status text, own_cost numeric, tree_cost numeric, own_tokens bigint,
  tree_tokens bigint, descendants integer, own_charged numeric, tree_charged numeric)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid;
  v_tree jsonb[];
  v_charged jsonb;
BEGIN
  v_user_id := keen.require_user_id();
  -- keen.session_tree walks the tree (KE006 when the session is not the caller's) and
  -- gives its order; path lists the session ids from the root down to each node. Each step
  -- is its own statement, the ledger read by user_id alone: on Citus a query that names one
  -- tenant's shard runs whole on that shard, where keen.session_tree does not exist.
  v_tree := ARRAY(SELECT pg_catalog.to_jsonb(t) FROM keen.session_tree(p_session_id) AS t);
  -- What the ledger actually charged per session: usage minus refunds tied to it.
  SELECT pg_catalog.jsonb_object_agg(c.id, c.charged) INTO v_charged
  FROM (SELECT x.session_id AS id, -pg_catalog.sum(x.amount) AS charged
        FROM keen.credit_transactions AS x
        WHERE x.user_id = v_user_id
          AND x.session_id = ANY (ARRAY(SELECT (j.r ->> 'id')::uuid FROM pg_catalog.unnest(v_tree) AS j(r)))
          AND x.transaction_type IN ('usage', 'refund')
        GROUP BY x.session_id) AS c;
  RETURN QUERY
  WITH tree AS MATERIALIZED (
    SELECT t.id, t.session_id, t.parent_session_id, t.depth, t.path, t.execution_status,
           t.total_cost, t.tokens_used, j.ord,
           coalesce((v_charged ->> t.id::text)::numeric, 0) AS charged
    FROM pg_catalog.unnest(v_tree) WITH ORDINALITY AS j(r, ord)
    CROSS JOIN LATERAL pg_catalog.jsonb_to_record(j.r) AS t(
      id uuid, session_id text, parent_session_id uuid, depth integer, path text[],
      execution_status text, total_cost numeric, tokens_used bigint)
  ), rollup AS (
    -- Each session's subtree: every node counts for itself and for each of its ancestors.
    SELECT a.session_id, pg_catalog.sum(t.total_cost) AS tree_cost,
           pg_catalog.sum(t.tokens_used) AS tree_tokens,
           pg_catalog.count(*) - 1 AS descendants,
           pg_catalog.sum(t.charged) AS tree_charged
    FROM tree AS t
    CROSS JOIN LATERAL pg_catalog.unnest(t.path) AS a(session_id)
    GROUP BY a.session_id
  )
  SELECT t.id, t.session_id, t.parent_session_id, t.depth, t.path, t.execution_status,
         t.total_cost::numeric, r.tree_cost::numeric, t.tokens_used, r.tree_tokens::bigint,
         r.descendants::integer, t.charged::numeric, r.tree_charged::numeric
  FROM tree AS t
  JOIN rollup AS r ON r.session_id = t.session_id
  ORDER BY t.ord;
END
$$;

CREATE FUNCTION keen.refresh_dashboard_metrics()
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- JIT compilation costs more than it saves on these queries (1.3 s on 2 cores).
SET jit = off
AS $$
BEGIN
  IF (SELECT c.relispopulated FROM pg_catalog.pg_class AS c
      WHERE c.oid = 'keen.dashboard_metrics'::pg_catalog.regclass) THEN
    -- ExclusiveLock only: readers go on reading the previous figures until commit.
    REFRESH MATERIALIZED VIEW CONCURRENTLY keen.dashboard_metrics;
  ELSE
    -- CONCURRENTLY refuses a view that was never populated (created WITH NO DATA).
    REFRESH MATERIALIZED VIEW keen.dashboard_metrics;
  END IF;
END
$$;

CREATE FUNCTION keen.add_usage_deltas(p_deltas keen.usage_delta[])
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_deltas keen.usage_delta[] := p_deltas;
  v_delta keen.usage_delta;
BEGIN
  -- Per (user, day), in key order (the lock order), skipping days whose figures do not
  -- change: add under the row lock (creating the row first if need be), so no update is lost.
  -- (Not one INSERT … ON CONFLICT DO UPDATE: the CHECK is tested on the proposed row
  -- before the conflict is found, and a decrement is a negative proposed row.)
  -- One delta (a ledger row's first of the day, a session's start) needs no aggregation.
  IF pg_catalog.cardinality(v_deltas) > 1 THEN
    v_deltas := ARRAY(
      SELECT ROW(x.user_id, x.date_bucket, pg_catalog.sum(x.sessions_started),
                 pg_catalog.sum(x.sessions_completed), pg_catalog.sum(x.sessions_failed),
                 pg_catalog.sum(x.sessions_cancelled), pg_catalog.sum(x.tokens_used),
                 pg_catalog.sum(x.tool_calls), pg_catalog.sum(x.total_cost),
                 pg_catalog.sum(x.credits_purchased), pg_catalog.sum(x.credits_spent),
                 pg_catalog.sum(x.credits_refunded), pg_catalog.sum(x.credits_adjusted))::keen.usage_delta
      FROM pg_catalog.unnest(v_deltas) AS x
      GROUP BY x.user_id, x.date_bucket
      ORDER BY x.user_id, x.date_bucket);
  END IF;
  FOREACH v_delta IN ARRAY coalesce(v_deltas, '{}')
  LOOP
    CONTINUE WHEN (v_delta.sessions_started, v_delta.sessions_completed, v_delta.sessions_failed,
                   v_delta.sessions_cancelled, v_delta.tokens_used, v_delta.tool_calls,
                   v_delta.total_cost, v_delta.credits_purchased, v_delta.credits_spent,
                   v_delta.credits_refunded, v_delta.credits_adjusted)
                  = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    LOOP
      UPDATE keen.daily_usage_stats AS d
      SET sessions_started = d.sessions_started + v_delta.sessions_started,
          sessions_completed = d.sessions_completed + v_delta.sessions_completed,
          sessions_failed = d.sessions_failed + v_delta.sessions_failed,
          sessions_cancelled = d.sessions_cancelled + v_delta.sessions_cancelled,
          tokens_used = d.tokens_used + v_delta.tokens_used,
          tool_calls = d.tool_calls + v_delta.tool_calls,
          total_cost = d.total_cost + v_delta.total_cost,
          credits_purchased = d.credits_purchased + v_delta.credits_purchased,
          credits_spent = d.credits_spent + v_delta.credits_spent,
          credits_refunded = d.credits_refunded + v_delta.credits_refunded,
          credits_adjusted = d.credits_adjusted + v_delta.credits_adjusted,
          updated_at = pg_catalog.now()
      WHERE d.user_id = v_delta.user_id AND d.date_bucket = v_delta.date_bucket;
      EXIT WHEN FOUND;
      -- The day's first figures: create the row (a concurrent creator wins, then we add).
      INSERT INTO keen.daily_usage_stats (user_id, date_bucket)
      VALUES (v_delta.user_id, v_delta.date_bucket)
      ON CONFLICT (user_id, date_bucket) DO NOTHING;
    END LOOP;
  END LOOP;
END
$$;

CREATE FUNCTION keen.track_session_usage(p_before keen.agent_sessions, p_after keen.agent_sessions)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Called by the session functions after each write of a session (p_before NULL for a new
  -- one). Nothing to count unless a figure's input changed.
  IF p_before.id IS NOT NULL
     AND (p_before.user_id, p_before.execution_status, p_before.tokens_used, p_before.tool_calls_count,
          p_before.total_cost, p_before.start_time, p_before.end_time)
         IS NOT DISTINCT FROM
         (p_after.user_id, p_after.execution_status, p_after.tokens_used, p_after.tool_calls_count,
          p_after.total_cost, p_after.start_time, p_after.end_time) THEN
    RETURN;
  END IF;
  -- Queued, and added at commit by the queue's deferred trigger (keen.session_usage_queue).
  INSERT INTO keen.session_usage_queue (before_row, after_row) VALUES (p_before, p_after);
END
$$;

CREATE FUNCTION keen.tg_session_usage_queue__flush()
RETURNS trigger
LANGUAGE plpgsql
-- Deferred to COMMIT, where it runs as the committing role (keen_app, outside the SECURITY
-- DEFINER function that changed the session): it writes the stats as their owner instead,
-- for the queued session's own user_id.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid := coalesce((NEW.after_row).user_id, (NEW.before_row).user_id);
  v_deltas keen.usage_delta[];
  v_timezone text;
BEGIN
  -- The user's time zone as of the commit (the day boundaries of the figures).
  SELECT u.timezone INTO v_timezone FROM keen.users AS u WHERE u.id = v_user_id;
  IF NOT FOUND THEN
    -- As keen.credit_local_date reads it: UTC when the row is not visible.
    v_timezone := 'UTC';
  END IF;
  -- A changed session: take back what the old row counted, add what the new one counts.
  IF (NEW.before_row).id IS NOT NULL THEN
    v_deltas := keen.session_usage(NEW.before_row, v_timezone, -1);
  END IF;
  IF (NEW.after_row).id IS NOT NULL THEN
    v_deltas := v_deltas || keen.session_usage(NEW.after_row, v_timezone);
  END IF;
  PERFORM keen.add_usage_deltas(v_deltas);
  DELETE FROM keen.session_usage_queue AS q WHERE q.id = NEW.id;
  RETURN NULL;
END
$$;

-- ===== triggers ==============================================================
-- Session figures are added at commit (deferred): a transaction then takes the (user, day)
-- row lock only at its very end, after the credit account lock of any charge it makes, so
-- session and credit functions cannot deadlock on it whatever order they lock in, and a
-- user's parallel agents hold the shared row only for the instant of a commit. (A session
-- deleted with its user, ON DELETE CASCADE, takes its figures with it: nothing to count.)
CREATE CONSTRAINT TRIGGER _500_flush AFTER INSERT ON keen.session_usage_queue
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION keen.tg_session_usage_queue__flush();
-- (Ledger rows are counted by the credit movements themselves, under the account lock:
-- keen.add_ledger_usage, migration 0012.)

-- ===== row-level security ====================================================
ALTER TABLE keen.daily_usage_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.daily_usage_stats FORCE ROW LEVEL SECURITY;
-- Tenants see and write only their own rows; the owner policy serves the
-- cross-tenant SECURITY DEFINER functions and the dashboard refresh.
CREATE POLICY select_own ON keen.daily_usage_stats FOR SELECT TO keen_app
  USING (user_id = keen.current_user_id());
CREATE POLICY owner_all ON keen.daily_usage_stats FOR ALL TO keen_owner USING (true) WITH CHECK (true);
-- The queue is keen_owner's alone (the session functions and the trigger write it as owner).
ALTER TABLE keen.session_usage_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.session_usage_queue FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_all ON keen.session_usage_queue FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== grants ================================================================
-- Read only: the triggers write the figures as keen_owner (inside the SECURITY DEFINER
-- functions that change sessions and the ledger, or as definer at commit).
GRANT SELECT ON keen.daily_usage_stats TO keen_app;
GRANT SELECT ON keen.dashboard_metrics TO keen_analytics;
GRANT EXECUTE ON FUNCTION keen.usage_report(date, date), keen.session_cost_breakdown(text) TO keen_app;
-- Not granted: session_usage, ledger_usage, add_usage_deltas and track_session_usage, which
-- the session functions and the triggers call as keen_owner; nor the queue.
-- The scheduled refresh runs as an analytics login: no superuser needed for a cron job.
GRANT EXECUTE ON FUNCTION keen.refresh_dashboard_metrics() TO keen_analytics;

-- ===== comments ==============================================================
COMMENT ON TYPE keen.usage_delta IS
  'A change of daily_usage_stats figures for one user and day (signed).';
COMMENT ON TABLE keen.daily_usage_stats IS
  'Per user and day (the user''s own time zone): sessions, tokens, cost, credits; kept by triggers.';
COMMENT ON COLUMN keen.daily_usage_stats.date_bucket IS
  'The user''s calendar day (users.timezone): sessions count on their start day, outcomes on their end day, ledger rows on theirs.';
COMMENT ON COLUMN keen.daily_usage_stats.credits_spent IS 'Credits charged by usage ledger rows (positive).';
COMMENT ON COLUMN keen.daily_usage_stats.credits_refunded IS 'Credits returned by refund ledger rows.';
COMMENT ON COLUMN keen.daily_usage_stats.credits_adjusted IS 'Net of the day''s adjustment ledger rows, signed.';
COMMENT ON MATERIALIZED VIEW keen.dashboard_metrics IS
  'Operators'' dashboard: hourly (UTC) figures of the last 24 hours, all tenants; keen_analytics only.';
COMMENT ON COLUMN keen.dashboard_metrics.active_users IS 'Users with a session running at some moment of the hour.';
COMMENT ON COLUMN keen.dashboard_metrics.avg_cost IS 'Average cost of the sessions completed in the hour; NULL when none.';
COMMENT ON COLUMN keen.dashboard_metrics.p50_duration_seconds IS 'Median duration of the sessions that ended in the hour.';
COMMENT ON COLUMN keen.dashboard_metrics.p95_duration_seconds IS '95th percentile duration of the sessions that ended in the hour.';
COMMENT ON FUNCTION keen.session_usage(keen.agent_sessions, text, integer) IS
  'What one session counts in daily_usage_stats (times p_sign): the attribution rule, shared by triggers and checks.';
COMMENT ON FUNCTION keen.ledger_usage(keen.credit_transactions, text) IS
  'What one ledger row counts in daily_usage_stats: the attribution rule, shared by triggers and checks.';
COMMENT ON FUNCTION keen.recompute_usage_stats(uuid) IS
  'Operators: daily_usage_stats as recomputed from sessions and the ledger (one user, or all for NULL).';
COMMENT ON FUNCTION keen.rebuild_usage_stats(uuid) IS
  'Operators: rewrites daily_usage_stats from sessions and the ledger (one user, or all for NULL); returns rows changed.';
COMMENT ON FUNCTION keen.verify_usage_stats() IS
  'Operators: every figure of daily_usage_stats that differs from its recomputation; empty when healthy.';
COMMENT ON FUNCTION keen.usage_report(date, date) IS
  'The caller''s own figures for each day from p_from to p_to (at most 366 days), zeros on days without activity.';
COMMENT ON FUNCTION keen.session_cost_breakdown(text) IS
  'The caller''s session tree under p_session_id: each session''s own cost and its subtree''s (the task''s) cost, tokens and charges.';
COMMENT ON FUNCTION keen.refresh_dashboard_metrics() IS
  'Refreshes dashboard_metrics CONCURRENTLY (plainly the first time); for the analytics/operator login.';
COMMENT ON FUNCTION keen.add_usage_deltas(keen.usage_delta[]) IS
  'Adds figures to daily_usage_stats, one (user, day) row at a time in key order; used by the triggers.';
COMMENT ON TABLE keen.session_usage_queue IS
  'Session changes whose figures daily_usage_stats receives at COMMIT (deferred trigger _500_flush); empty outside transactions.';
COMMENT ON COLUMN keen.session_usage_queue.id IS 'Primary key (the flush deletes the row by it).';
COMMENT ON COLUMN keen.session_usage_queue.before_row IS 'The session before the change; NULL for a new session.';
COMMENT ON COLUMN keen.session_usage_queue.after_row IS 'The session after the change.';
COMMENT ON FUNCTION keen.track_session_usage(keen.agent_sessions, keen.agent_sessions) IS
  'Queues a session change (p_before NULL for a new session) for daily_usage_stats at commit, unless no figure''s input changed; called by the session functions. Not keen_app''s.';
COMMENT ON FUNCTION keen.tg_session_usage_queue__flush() IS
  'Trigger (deferred to commit): adds a queued session change to daily_usage_stats (the user''s time zone at commit) and deletes it from the queue.';

-- ===== initial population ====================================================
-- Readers get figures (24 zero hours) at once instead of "has not been populated".
REFRESH MATERIALIZED VIEW keen.dashboard_metrics;

COMMENT ON COLUMN keen.daily_usage_stats.user_id IS 'The tenant of the figures.';
COMMENT ON COLUMN keen.daily_usage_stats.sessions_started IS 'Sessions started that day.';
COMMENT ON COLUMN keen.daily_usage_stats.sessions_completed IS 'Sessions completed that day (counted on their end day).';
COMMENT ON COLUMN keen.daily_usage_stats.sessions_failed IS 'Sessions failed that day (counted on their end day).';
COMMENT ON COLUMN keen.daily_usage_stats.sessions_cancelled IS 'Sessions cancelled that day (counted on their end day).';
COMMENT ON COLUMN keen.daily_usage_stats.tokens_used IS 'Tokens of the sessions started that day.';
COMMENT ON COLUMN keen.daily_usage_stats.tool_calls IS 'Tool calls of the sessions started that day.';
COMMENT ON COLUMN keen.daily_usage_stats.total_cost IS 'Cost (6 decimals) of the sessions started that day.';
COMMENT ON COLUMN keen.daily_usage_stats.credits_purchased IS 'Credits bought that day (purchase entries).';

COMMENT ON COLUMN keen.daily_usage_stats.updated_at IS 'When the figures last changed.';

RESET ROLE;
