-- One progress report with a cost per transaction, on the session of a random one of the
-- 1,000 tenants bench-fan0 … bench-fan999 (the hub's subscribers).
\set n random(0, 999)
BEGIN;
SELECT set_config('role', 'keen_app', true), set_config('app.current_user_id', md5('bench-fan' || :n)::uuid::text, true);
SELECT last_event_seq FROM keen.update_session_progress(p_session_id => 's', p_iterations => 1, p_tool_calls => 2, p_tokens => 100, p_cost => 0.001);
END;
