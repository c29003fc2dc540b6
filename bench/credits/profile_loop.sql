-- Server time per deduction, without client round trips: 3,000 deductions over the bench's
-- accounts (setup.sql) in one DO block as keen_app, the tenant context set per call.
-- psql -X -q "$dburl" -f bench/credits/profile_loop.sql   (prints a NOTICE)
-- For a per-statement profile, first: LOAD 'plpgsql_check'; SET plpgsql_check.profiler = on;
-- (CREATE EXTENSION plpgsql_check in the bench database), then plpgsql_profiler_function_tb().
SET ROLE keen_app;
DO $$
DECLARE v_t0 timestamptz; v_n int := 3000;
BEGIN
  v_t0 := clock_timestamp();
  FOR i IN 1..v_n LOOP
    PERFORM set_config('app.current_user_id', md5('bench-' || (1 + (i * 7919) % 10000))::uuid::text, true);
    PERFORM keen.deduct_credits(p_amount => 0.0100, p_description => 'bench', p_idempotency_key => gen_random_uuid()::text);
  END LOOP;
  RAISE NOTICE 'us per deduction: %', round(extract(epoch FROM clock_timestamp() - v_t0) * 1e6 / v_n, 1);
END $$;
RESET ROLE;
