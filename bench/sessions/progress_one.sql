-- One progress report per transaction; client k reports on session s<k> of the one tenant
-- bench-one: every report of that tenant takes its event-stream lock until commit.
BEGIN;
SELECT set_config('role', 'keen_app', true), set_config('app.current_user_id', md5('bench-one')::uuid::text, true);
SELECT last_event_seq FROM keen.update_session_progress(p_session_id => 's' || :client_id % 8, p_iterations => 1, p_tool_calls => 2, p_tokens => 100);
END;
