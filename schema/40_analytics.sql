-- Usage analytics: per-user daily figures kept in step by triggers, and the operators'
-- dashboard as a materialized view.
SET ROLE keen_owner;

-- ===== tables ================================================================
CREATE TABLE keen.daily_usage_stats (
  user_id             uuid          NOT NULL,
  date_bucket         date          NOT NULL,
  sessions_started    integer       NOT NULL DEFAULT 0,
  sessions_completed  integer       NOT NULL DEFAULT 0,
  sessions_failed     integer       NOT NULL DEFAULT 0,
  tokens_used         bigint        NOT NULL DEFAULT 0,
  tool_calls          bigint        NOT NULL DEFAULT 0,
  total_cost          numeric(16,6) NOT NULL DEFAULT 0,
  credits_purchased   numeric(16,4) NOT NULL DEFAULT 0,
  credits_spent       numeric(16,4) NOT NULL DEFAULT 0,
  updated_at          timestamptz   NOT NULL DEFAULT now(),
  CONSTRAINT daily_usage_stats_pkey PRIMARY KEY (user_id, date_bucket),
  CONSTRAINT daily_usage_stats_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES keen.users (id) ON DELETE CASCADE,
  CONSTRAINT daily_usage_stats_counts_check CHECK (
    sessions_started >= 0 AND sessions_completed >= 0 AND sessions_failed >= 0
    AND tokens_used >= 0 AND tool_calls >= 0 AND total_cost >= 0
    AND credits_purchased >= 0 AND credits_spent >= 0)
);

-- ===== materialized views ====================================================
-- Hourly buckets over the last 24 hours. Materialized views are outside RLS: only
-- keen_analytics may read it, and its owner keen_owner reads the tables through the
-- owner policy (a view refreshed by a role under forced RLS would silently be empty).
CREATE MATERIALIZED VIEW keen.dashboard_metrics AS
WITH hours AS (
  SELECT generate_series(date_trunc('hour', now()) - interval '23 hours',
                         date_trunc('hour', now()), interval '1 hour') AS hour_bucket
), started AS (
  SELECT date_trunc('hour', s.start_time) AS hour_bucket,
         count(*) AS sessions_started,
         count(DISTINCT s.user_id) AS active_users
  FROM keen.agent_sessions AS s
  WHERE s.start_time >= date_trunc('hour', now()) - interval '23 hours'
  GROUP BY 1
), ended AS (
  SELECT date_trunc('hour', s.end_time) AS hour_bucket,
         count(*) FILTER (WHERE s.execution_status = 'completed') AS sessions_completed,
         count(*) FILTER (WHERE s.execution_status = 'failed') AS sessions_failed,
         avg(s.total_cost) FILTER (WHERE s.execution_status = 'completed') AS avg_cost,
         coalesce(sum(s.tokens_used), 0) AS tokens_used,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.end_time - s.start_time))
           AS p50_duration_seconds,
         percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM s.end_time - s.start_time))
           AS p95_duration_seconds
  FROM keen.agent_sessions AS s
  WHERE s.end_time >= date_trunc('hour', now()) - interval '23 hours'
  GROUP BY 1
), credits AS (
  SELECT date_trunc('hour', t.created_at) AS hour_bucket,
         coalesce(sum(t.amount) FILTER (WHERE t.transaction_type = 'purchase'), 0) AS credits_sold,
         coalesce(-sum(t.amount) FILTER (WHERE t.transaction_type = 'usage'), 0) AS credits_spent
  FROM keen.credit_transactions AS t
  WHERE t.created_at >= date_trunc('hour', now()) - interval '23 hours'
  GROUP BY 1
)
SELECT h.hour_bucket,
       coalesce(st.sessions_started, 0) AS sessions_started,
       coalesce(en.sessions_completed, 0) AS sessions_completed,
       coalesce(en.sessions_failed, 0) AS sessions_failed,
       coalesce(st.active_users, 0) AS active_users,
       en.avg_cost,
       coalesce(en.tokens_used, 0) AS tokens_used,
       coalesce(cr.credits_sold, 0) AS credits_sold,
       coalesce(cr.credits_spent, 0) AS credits_spent,
       en.p50_duration_seconds,
       en.p95_duration_seconds,
       now() AS refreshed_at
FROM hours AS h
LEFT JOIN started AS st USING (hour_bucket)
LEFT JOIN ended AS en USING (hour_bucket)
LEFT JOIN credits AS cr USING (hour_bucket)
WITH NO DATA;

-- ===== indexes ===============================================================
-- REFRESH … CONCURRENTLY needs a unique index.
CREATE UNIQUE INDEX dashboard_metrics_hour_bucket_key ON keen.dashboard_metrics (hour_bucket);
CREATE INDEX agent_sessions_start_time_idx ON keen.agent_sessions (start_time);
CREATE INDEX agent_sessions_end_time_idx ON keen.agent_sessions (end_time) WHERE end_time IS NOT NULL;
CREATE INDEX credit_transactions_created_at_idx ON keen.credit_transactions (created_at);

-- ===== row-level security ====================================================
ALTER TABLE keen.daily_usage_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE keen.daily_usage_stats FORCE ROW LEVEL SECURITY;
-- Tenants see and write only their own rows; the owner policy serves the
-- cross-tenant SECURITY DEFINER functions and the dashboard refresh.
CREATE POLICY select_own ON keen.daily_usage_stats FOR SELECT TO keen_app
  USING (user_id = (SELECT keen.current_user_id()));
CREATE POLICY insert_own ON keen.daily_usage_stats FOR INSERT TO keen_app
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY update_own ON keen.daily_usage_stats FOR UPDATE TO keen_app
  USING (user_id = (SELECT keen.current_user_id()))
  WITH CHECK (user_id = (SELECT keen.current_user_id()));
CREATE POLICY owner_all ON keen.daily_usage_stats FOR ALL TO keen_owner USING (true) WITH CHECK (true);

-- ===== grants ================================================================
GRANT SELECT, INSERT, UPDATE ON keen.daily_usage_stats TO keen_app;
GRANT SELECT ON keen.dashboard_metrics TO keen_analytics;

-- ===== comments ==============================================================
COMMENT ON TABLE keen.daily_usage_stats IS 'Per user and day (in the user''s time zone): sessions, tokens, cost, credits.';
COMMENT ON MATERIALIZED VIEW keen.dashboard_metrics IS
  'Operators'' dashboard: hourly figures of the last 24 hours, all tenants; keen_analytics only.';

RESET ROLE;
