REFRESH MATERIALIZED VIEW keen.dashboard_metrics;
