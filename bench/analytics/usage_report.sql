-- A tenant's 30-day usage report, as the service runs it: keen_app, tenant context, RLS.
\set u random(1, :users)
BEGIN;
SELECT set_config('role', 'keen_app', true),
       set_config('app.current_user_id', md5('bench-user-' || :u)::uuid::text, true);
SELECT * FROM keen.usage_report(p_from => current_date - 29, p_to => current_date);
COMMIT;
