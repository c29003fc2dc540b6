-- The distribution itself (docs/scaling.md): every tenant table hash-distributed by its
-- tenant key and co-located with users; session_limits a reference table; dashboard_metrics
-- a coordinator table; the tenant context propagated; a tenant's statement routed to one shard.
BEGIN;
SELECT plan(9);

SELECT cmp_ok((SELECT count(*)::int FROM citus_get_active_worker_nodes()), '>=', 2,
  'the coordinator has at least two active workers');

-- Tenant tables: every keen table with a user_id column.
CREATE TEMP TABLE tenant_tables AS
  SELECT c.oid::regclass AS rel, CASE c.relname WHEN 'users' THEN 'id' ELSE 'user_id' END AS key
    FROM pg_class AS c
   WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind = 'r'
     AND EXISTS (SELECT FROM pg_attribute AS a WHERE a.attrelid = c.oid AND a.attname = 'user_id')
     AND c.relname <> 'tenant_lookup';

SELECT cmp_ok((SELECT count(*)::int FROM tenant_tables), '>=', 11, 'the tenant tables are found');
SELECT is_empty(
  $$SELECT t.rel::text FROM tenant_tables AS t
     WHERE NOT EXISTS (SELECT FROM pg_dist_partition AS p
                        WHERE p.logicalrelid = t.rel AND p.partmethod = 'h'
                          AND column_to_column_name(p.logicalrelid, p.partkey) = t.key)$$,
  'every tenant table is hash-distributed by user_id (users by id)');
SELECT is(
  (SELECT count(DISTINCT p.colocationid)::int FROM pg_dist_partition AS p
     JOIN tenant_tables AS t ON t.rel = p.logicalrelid),
  1, 'every tenant table is co-located with users (one co-location group)');
SELECT is(
  (SELECT partmethod::text FROM pg_dist_partition WHERE logicalrelid = 'keen.session_limits'::regclass),
  'n', 'session_limits is a reference table (one row of operator settings, on every node)');
SELECT is_empty(
  $$SELECT logicalrelid::text FROM pg_dist_partition WHERE logicalrelid = 'keen.dashboard_metrics'::regclass$$,
  'dashboard_metrics stays on the coordinator (a materialized view over the distributed tables)');
SELECT is(current_setting('citus.propagate_set_commands'), 'local',
  'SET LOCAL (the tenant context) is propagated to the workers in this database');

-- A tenant's statement on any tenant table is routed to exactly one shard.
CREATE FUNCTION pg_temp.task_count(p_query text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE v_plan json;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || p_query INTO v_plan;
  RETURN (v_plan -> 0 -> 'Plan' -> 'Distributed Query' -> 'Job' ->> 'Task Count')::int;
END $$;
SELECT is_empty(
  $$SELECT t.rel::text FROM tenant_tables AS t
     WHERE pg_temp.task_count(format('SELECT * FROM %s WHERE %I = %L', t.rel, t.key,
                                     '00000000-0000-4000-8000-00000000c175')) IS DISTINCT FROM 1$$,
  'a statement naming one tenant by value runs as one task on one shard, on every tenant table');
SELECT cmp_ok(
  pg_temp.task_count($$SELECT * FROM keen.credit_transactions AS t
                        JOIN keen.credit_accounts AS a ON a.user_id = t.user_id AND a.id = t.account_id
                       WHERE t.user_id = '00000000-0000-4000-8000-00000000c175'$$),
  '=', 1, 'a join of co-located tables for one tenant is one task too');

SELECT * FROM finish();
ROLLBACK;
