-- One progress report per transaction; client k reports on tenant bench-u<k>'s session.
BEGIN;
SELECT set_config('role', 'keen_app', true), set_config('app.current_user_id', md5('bench-u' || :client_id % 8)::uuid::text, true);
SELECT last_event_seq FROM keen.update_session_progress(p_session_id => 's', p_iterations => 1, p_tool_calls => 2, p_tokens => 100);
END;
