-- Roll back 0015_tenant_reads: the four tenant reads are plain queries again.
SET ROLE keen_owner;
SET LOCAL lock_timeout = '5s';

DROP FUNCTION keen.list_credit_transactions(integer);
DROP FUNCTION keen.list_user_audit_log(bigint, integer);
DROP FUNCTION keen.list_auth_tokens();
DROP FUNCTION keen.current_user_profile();
