SELECT keen.refresh_dashboard_metrics();
