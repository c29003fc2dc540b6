-- Every client charges the same tenant: all deductions serialize on one account row lock.
BEGIN;
SELECT set_config('role', 'keen_app', true), set_config('app.current_user_id', md5('bench-1')::uuid::text, true);
SELECT id FROM keen.deduct_credits(p_amount => 0.0100, p_description => 'bench', p_idempotency_key => gen_random_uuid()::text);
END;
