-- Least privilege on internal helpers: keen_app no longer executes keen.in_migration().
-- The service never reaches the one trigger that calls it (it has no UPDATE, DELETE or
-- TRUNCATE on the ledger; the privilege check refuses first), and fail_recharge_request is
-- billing-only. Every other helper keen_app executes is called as the invoker by a tenant
-- function or trigger that keen_app runs (docs/schema.md, "Function privileges").
SET ROLE keen_owner;

REVOKE EXECUTE ON FUNCTION keen.in_migration() FROM keen_app;

RESET ROLE;
