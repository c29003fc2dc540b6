-- One session's life, three transactions as the service runs them (keen_app, tenant
-- context, RLS): start_session, update_session_progress, complete_session (which charges
-- the cost through the ledger). With -r, the complete_session statement and the COMMIT
-- after it (where the deferred stats trigger fires) are reported apart.
\set u random(1, :users)
\set r random(1, 2000000000)
BEGIN;
SELECT set_config('role', 'keen_app', true),
       set_config('app.current_user_id', md5('bench-user-' || :u)::uuid::text, true);
SELECT 1 FROM keen.start_session(p_session_id => 'pgb-' || :client_id || '-' || :r, p_vision => 'bench',
                                 p_working_directory => '/w', p_git_branch => 'main');
COMMIT;
BEGIN;
SELECT set_config('role', 'keen_app', true),
       set_config('app.current_user_id', md5('bench-user-' || :u)::uuid::text, true);
SELECT 1 FROM keen.update_session_progress(p_session_id => 'pgb-' || :client_id || '-' || :r,
                                           p_tool_calls => 3, p_tokens => 1200, p_cost => 0.03);
COMMIT;
BEGIN;
SELECT set_config('role', 'keen_app', true),
       set_config('app.current_user_id', md5('bench-user-' || :u)::uuid::text, true);
SELECT 1 FROM keen.complete_session(p_session_id => 'pgb-' || :client_id || '-' || :r, p_success => true,
                                    p_total_cost => 0.05);
COMMIT;
