-- Roll back 0006_least_privilege_helpers: keen_app executes keen.in_migration() again.
SET ROLE keen_owner;

GRANT EXECUTE ON FUNCTION keen.in_migration() TO keen_app;

RESET ROLE;
