-- Tenants of the sessions benchmark (written directly, as in bench/credits):
--   bench-u0 … bench-u7: one running session 's' each (8 clients on 8 tenants);
--   bench-one: eight running sessions s0 … s7 (8 clients on one tenant's event stream);
--   bench-tree: a 10,000-node tree 'tree10k' (1 + 10 + 100 + 1,000 + 8,889; depth 4) and a
--   1,000-node tree 'tree1k' (1 + 9 + 81 + 909; depth 3), built through start_session.
--   bench-fan0 … bench-fan999: one running session 's' each (the hub's 1,000 subscribers).
-- Every tenant has a credit account with 1,000,000 credits: progress reports carry a cost,
-- reserved on the session's hold (chunks of session_limits.budget_chunk).
INSERT INTO keen.users (id, email, username, password_hash)
SELECT md5('bench-' || t)::uuid, 'bench-' || t || '@example.com', 'bench-' || t, repeat('h', 32)
  FROM unnest(ARRAY['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'one', 'tree']
              || ARRAY(SELECT 'fan' || n FROM generate_series(0, 999) AS n)) AS t;
INSERT INTO keen.credit_accounts (user_id)
SELECT u.id FROM keen.users AS u WHERE u.username LIKE 'bench-%'
ON CONFLICT (user_id) DO NOTHING;
SELECT format($q$BEGIN; SET LOCAL ROLE keen_app; SET LOCAL app.current_user_id = %L;
                SELECT FROM keen.add_credits(p_amount => 1000000); COMMIT;$q$, u.id)
  FROM keen.users AS u WHERE u.username LIKE 'bench-%' \gexec
UPDATE keen.session_limits SET max_children = NULL;

CREATE FUNCTION public.bench_start(p_sessions text[], p_parents text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1 .. array_length(p_sessions, 1) LOOP
    PERFORM keen.start_session(p_session_id => p_sessions[i], p_vision => 'bench', p_working_directory => '/w',
                               p_git_branch => 'main', p_parent_session_id => p_parents[i]);
  END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION public.bench_start(text[], text[]) TO keen_app;

-- One tenant transaction per user, as the service runs them.
SELECT format($q$BEGIN; SET LOCAL ROLE keen_app; SET LOCAL app.current_user_id = %L;
                SELECT bench_start(ARRAY['s'], ARRAY[NULL]); COMMIT;$q$, md5('bench-u' || n)::uuid)
  FROM generate_series(0, 7) AS n \gexec
SELECT format($q$BEGIN; SET LOCAL ROLE keen_app; SET LOCAL app.current_user_id = %L;
                SELECT bench_start(ARRAY['s'], ARRAY[NULL]); COMMIT;$q$, md5('bench-fan' || n)::uuid)
  FROM generate_series(0, 999) AS n \gexec
BEGIN;
SET LOCAL ROLE keen_app;
SELECT set_config('app.current_user_id', md5('bench-one')::uuid::text, true);
SELECT bench_start(ARRAY(SELECT 's' || n FROM generate_series(0, 7) AS n), ARRAY_FILL(NULL::text, ARRAY[8]));
COMMIT;
-- Node n (n >= 1) hangs under node (n - 1) / b for the first levels; the rest are spread over
-- the last full level. 500 starts per transaction, as a busy service would commit them.
SELECT format($q$BEGIN; SET LOCAL ROLE keen_app; SET LOCAL app.current_user_id = %L;
                SELECT bench_start(%L::text[], %L::text[]); COMMIT;$q$,
              md5('bench-tree')::uuid, c.names, c.parents)
  FROM (SELECT n / 500 AS chunk,
               array_agg('tree10k-' || n ORDER BY n) AS names,
               array_agg(CASE WHEN n = 0 THEN NULL
                              WHEN n <= 1110 THEN 'tree10k-' || (n - 1) / 10
                              ELSE 'tree10k-' || 111 + (n - 1111) % 1000 END ORDER BY n) AS parents
          FROM generate_series(0, 9999) AS n GROUP BY 1 ORDER BY 1) AS c \gexec
SELECT format($q$BEGIN; SET LOCAL ROLE keen_app; SET LOCAL app.current_user_id = %L;
                SELECT bench_start(%L::text[], %L::text[]); COMMIT;$q$,
              md5('bench-tree')::uuid, c.names, c.parents)
  FROM (SELECT n / 500 AS chunk,
               array_agg('tree1k-' || n ORDER BY n) AS names,
               array_agg(CASE WHEN n = 0 THEN NULL
                              WHEN n <= 90 THEN 'tree1k-' || (n - 1) / 9
                              ELSE 'tree1k-' || 10 + (n - 91) % 81 END ORDER BY n) AS parents
          FROM generate_series(0, 999) AS n GROUP BY 1 ORDER BY 1) AS c \gexec
DROP FUNCTION public.bench_start(text[], text[]);
VACUUM ANALYZE;
