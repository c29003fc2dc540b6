-- Idle service transactions are bounded where an injected statement cannot lift the bound
-- (issue 13, finding 6): idle_in_transaction_session_timeout is a user setting any session
-- may change, so an operator job ends service transactions left idle for longer than
-- p_idle instead. keen_owner gets the two predefined roles it needs to see and end other
-- logins' backends (never a superuser's: PostgreSQL refuses that to pg_signal_backend).
GRANT pg_read_all_stats, pg_signal_backend TO keen_owner;

SET ROLE keen_owner;

CREATE FUNCTION keen.end_idle_transactions(p_idle interval DEFAULT '1 minute')
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_pid integer;
  v_ended integer := 0;
BEGIN
  IF p_idle IS NULL OR p_idle <= interval '0' THEN
    RAISE EXCEPTION 'invalid argument: idle time % is not a positive interval', p_idle
      USING ERRCODE = 'KE013';
  END IF;
  -- Service logins only (members of keen_app that are not superusers), in this database,
  -- idle inside a transaction since before the bound.
  FOR v_pid IN
    SELECT a.pid
      FROM pg_catalog.pg_stat_activity AS a
      JOIN pg_catalog.pg_roles AS r ON r.oid = a.usesysid
     WHERE a.datname = pg_catalog.current_database()
       AND a.pid <> pg_catalog.pg_backend_pid()
       AND a.state IN ('idle in transaction', 'idle in transaction (aborted)')
       AND a.state_change < pg_catalog.now() - p_idle
       AND NOT r.rolsuper
       AND pg_catalog.pg_has_role(r.oid, 'keen_app', 'MEMBER')
     ORDER BY a.pid
  LOOP
    IF pg_catalog.pg_terminate_backend(v_pid) THEN
      v_ended := v_ended + 1;
    END IF;
  END LOOP;
  RETURN v_ended;
END
$$;

COMMENT ON FUNCTION keen.end_idle_transactions(interval) IS
  'Housekeeping, all service logins (SECURITY DEFINER, operators only): ends the backends of keen_app members idle in a transaction for longer than p_idle; returns how many.';

RESET ROLE;
