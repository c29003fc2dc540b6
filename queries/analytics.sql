-- Analytics: the tenant's own usage report and session cost breakdown (db.tenant(user_id)),
-- the operators' dashboard (an analytics login: keen_analytics), and the stats checks
-- (operator login; not granted to keen_app).

-- name: DashboardMetrics :many
-- The operators' dashboard: hourly figures of the last 24 hours, oldest first (keen_analytics).
SELECT m.hour_bucket, m.sessions_started, m.sessions_completed, m.sessions_failed,
       m.sessions_cancelled, m.active_users, m.avg_cost, m.total_cost, m.tokens_used,
       m.credits_sold, m.credits_spent, m.credits_refunded, m.p50_duration_seconds,
       m.p95_duration_seconds, m.refreshed_at
FROM keen.dashboard_metrics AS m
ORDER BY m.hour_bucket;

-- name: RebuildUsageStats :one
-- Rewrites daily_usage_stats from sessions and the ledger (one user, or everyone); returns rows changed.
SELECT keen.rebuild_usage_stats(p_user_id => sqlc.narg(user_id)::uuid) AS rows_changed;

-- name: RefreshDashboardMetrics :exec
-- Refreshes dashboard_metrics concurrently (readers are never blocked); analytics or operator login.
SELECT keen.refresh_dashboard_metrics();

-- name: SessionCostBreakdown :many
-- The caller's session tree under a session: each session's own cost and its whole subtree's.
-- @not-null: *
-- @nullable: parent_session_id
SELECT b.id, b.session_id, b.parent_session_id, b.depth, b.path, b.execution_status, b.own_cost,
       b.tree_cost, b.own_tokens, b.tree_tokens, b.descendants, b.own_charged, b.tree_charged
FROM keen.session_cost_breakdown(p_session_id => sqlc.arg(session_id)::text) AS b;

-- name: UsageReport :many
-- The caller's own figures for each day from from_ to to (at most 366 days), zeros on quiet days.
-- @not-null: *
SELECT r.date_bucket, r.sessions_started, r.sessions_completed, r.sessions_failed,
       r.sessions_cancelled, r.tokens_used, r.tool_calls, r.total_cost, r.credits_purchased,
       r.credits_spent, r.credits_refunded, r.credits_adjusted
FROM keen.usage_report(p_from => sqlc.arg(from_)::date, p_to => sqlc.arg('to')::date) AS r;

-- name: VerifyUsageStats :many
-- Every daily_usage_stats figure that differs from its recomputation; empty when healthy (operators).
-- @not-null: *
SELECT v.user_id, v.date_bucket, v.figure, v.recorded, v.expected
FROM keen.verify_usage_stats() AS v;
