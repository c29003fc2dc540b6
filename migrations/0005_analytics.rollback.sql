-- Roll back 0005_analytics: the dashboard view, usage statistics and their upkeep.
SET ROLE keen_owner;
DROP MATERIALIZED VIEW keen.dashboard_metrics;
DROP INDEX keen.agent_sessions_start_time_idx;
DROP INDEX keen.agent_sessions_end_time_idx;
DROP INDEX keen.credit_transactions_created_at_idx;
DROP TABLE keen.daily_usage_stats;
RESET ROLE;
