-- Informational, not how keen_sql calls: the hot account's deduction as ONE statement in an
-- implicit transaction (tenant context and call together, committed at the statement's end),
-- so the account lock is not held across a client round trip (the result and the COMMIT).
-- Shows how much of the hot figure is that round trip; keen_sql's Database.tenant() sends
-- BEGIN, the context, the call and COMMIT as separate statements, like deduct_hot.sql.
SELECT d.id
  FROM (SELECT set_config('role', 'keen_app', true),
               set_config('app.current_user_id', md5('bench-1')::uuid::text, true)) AS c,
       LATERAL keen.deduct_credits(p_amount => 0.0100, p_description => 'bench',
                                   p_idempotency_key => gen_random_uuid()::text) AS d;
