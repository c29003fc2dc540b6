-- One deduction by a random one of 10,000 tenants, as the service does it: a transaction as
-- keen_app with the tenant context, deduct_credits with an idempotency key (limits are set on
-- every account, so the daily and monthly checks run), under RLS.
\set uid random(1, 10000)
BEGIN;
SELECT set_config('role', 'keen_app', true), set_config('app.current_user_id', md5('bench-' || :uid)::uuid::text, true);
SELECT id FROM keen.deduct_credits(p_amount => 0.0100, p_description => 'bench', p_idempotency_key => gen_random_uuid()::text);
END;
