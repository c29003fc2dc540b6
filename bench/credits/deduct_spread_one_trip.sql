-- As keen_sql's Database.deduct_credits sends it: BEGIN, context, call and COMMIT in one
-- pipeline (one round trip; the account lock is released without waiting for the client).
\set uid random(1, 10000)
\startpipeline
BEGIN;
SELECT set_config('role', 'keen_app', true), set_config('app.current_user_id', md5('bench-' || :uid)::uuid::text, true);
SELECT id FROM keen.deduct_credits(p_amount => 0.0100, p_description => 'bench', p_idempotency_key => gen_random_uuid()::text);
END;
\endpipeline
