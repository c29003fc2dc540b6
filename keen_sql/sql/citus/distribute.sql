-- Distribute a migrated keen database on a Citus coordinator (docs/scaling.md): every
-- tenant table hash-distributed by its tenant key and co-located with keen.users, the
-- lookup table by its own value, session_limits replicated to every node; the
-- dashboard_metrics materialized view stays a coordinator table. Idempotent: a table that
-- is already distributed is left as it is, so a re-run after a failure carries on.
-- Run by `keen-sql citus distribute` (a superuser on the coordinator, after `keen-sql
-- migrate`), in one transaction with the database setting that propagates the tenant context.
-- The settings it runs under are settings.sql, which the command sends first, one statement
-- at a time: Citus propagates a SET by sending its query's whole text to the workers.

DO $distribute$
DECLARE
  v_table record;
BEGIN
  FOR v_table IN
    SELECT t.name::regclass AS rel, t.kind, t.column_name, t.position
      FROM (VALUES
        ('keen.session_limits', 'reference', NULL, 0),
        -- The values unique across tenants, by the value: not co-located with the tenants.
        ('keen.tenant_lookup', 'lookup', 'value', 1),
        ('keen.users', 'tenant', 'id', 2),
        ('keen.auth_tokens', 'tenant', 'user_id', 3),
        ('keen.user_audit_log', 'tenant', 'user_id', 4),
        ('keen.agent_sessions', 'tenant', 'user_id', 5),
        ('keen.session_events', 'tenant', 'user_id', 6),
        ('keen.websocket_connections', 'tenant', 'user_id', 7),
        ('keen.credit_accounts', 'tenant', 'user_id', 8),
        ('keen.credit_holds', 'tenant', 'user_id', 9),
        ('keen.credit_transactions', 'tenant', 'user_id', 10),
        ('keen.recharge_requests', 'tenant', 'user_id', 11),
        ('keen.daily_usage_stats', 'tenant', 'user_id', 12)
      ) AS t (name, kind, column_name, position)
     WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition AS p WHERE p.logicalrelid = t.name::regclass)
     ORDER BY t.position
  LOOP
    IF v_table.kind = 'reference' THEN
      PERFORM create_reference_table(v_table.rel);
    ELSIF v_table.kind = 'lookup' THEN
      PERFORM create_distributed_table(v_table.rel, v_table.column_name, colocate_with => 'none');
    ELSIF v_table.rel = 'keen.users'::regclass THEN
      PERFORM create_distributed_table(v_table.rel, v_table.column_name);
    ELSE
      PERFORM create_distributed_table(v_table.rel, v_table.column_name, colocate_with => 'keen.users');
    END IF;
  END LOOP;
  -- The copies are on the shards; the coordinator's own rows are left behind, hidden.
  -- Removed once every table is distributed (a local table still referencing one would
  -- refuse it); truncate_local_data_after_distributing_table empties the local storage
  -- alone, shards untouched.
  FOR v_table IN
    SELECT p.logicalrelid AS rel FROM pg_dist_partition AS p
     WHERE p.logicalrelid::regclass::text LIKE 'keen.%'
       AND EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = p.logicalrelid AND pg_relation_size(c.oid) > 0)
  LOOP
    PERFORM truncate_local_data_after_distributing_table(v_table.rel);
  END LOOP;
END
$distribute$;

-- Functions that the shards themselves call (a trigger on a shard, an expression of a statement
-- pushed down to one) must exist on every node: Citus creates the others on the coordinator
-- only. The audit trail's guard (keen.in_migration) and its erasure (keen.redact_audit_changes),
-- and the functions that the CHECKs of the ledger, the accounts and the day's statistics call
-- (migration 0021; a CHECK runs on the shard).
SELECT create_distributed_function(f.f)
  FROM (VALUES ('keen.in_migration()'::regprocedure), ('keen.redact_audit_changes(jsonb)'::regprocedure),
               ('keen.credit_accounts_row_ok(numeric, numeric, numeric, numeric, numeric, numeric,
                 numeric, numeric, numeric, numeric, bigint, text, text)'::regprocedure),
               ('keen.credit_transactions_row_ok(text, numeric, numeric, numeric, bigint, text,
                 text)'::regprocedure),
               ('keen.daily_usage_stats_counts_ok(integer, integer, integer, integer, bigint, bigint,
                 numeric, numeric, numeric, numeric)'::regprocedure)) AS f (f);
