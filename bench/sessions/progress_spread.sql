-- One progress report with a cost (0.001: the hold's 1.00 chunk covers 1,000) per transaction; client k reports on tenant bench-u<k>'s session.
BEGIN;
SELECT set_config('role', 'keen_app', true), set_config('app.current_user_id', md5('bench-u' || :client_id % 8)::uuid::text, true);
SELECT last_event_seq FROM keen.update_session_progress(p_session_id => 's', p_iterations => 1, p_tool_calls => 2, p_tokens => 100, p_cost => 0.001);
END;
