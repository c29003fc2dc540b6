-- Roll back 0001_foundation: the schema `keen`, and the roles unless another database uses them.
DROP SCHEMA keen CASCADE;
-- Back to the built-in default (PUBLIC may execute new functions): removes keen_owner's
-- database-wide default-privilege entry, which would otherwise keep the role in use.
ALTER DEFAULT PRIVILEGES FOR ROLE keen_owner GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
DO $roles$
DECLARE
  v_role text;
BEGIN
  FOREACH v_role IN ARRAY ARRAY['keen_analytics', 'keen_app', 'keen_owner'] LOOP
    BEGIN
      EXECUTE format('DROP ROLE IF EXISTS %I', v_role);
    EXCEPTION WHEN dependent_objects_still_exist THEN
      -- Roles are cluster-wide: another database still has objects or grants of this role.
      RAISE NOTICE 'role % kept: another database still uses it', v_role;
    END;
  END LOOP;
END
$roles$;
