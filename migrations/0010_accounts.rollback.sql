-- Roll back 0010_accounts: the audit trail, the account functions and the new users columns.
SET ROLE keen_owner;

DROP TRIGGER _900_audit ON keen.users;
DROP TABLE keen.user_audit_log;
DROP FUNCTION keen.tg_user_audit_log__append_only();
DROP FUNCTION keen.tg_users__audit();
DROP FUNCTION keen.set_billing(uuid, text, text, text);
DROP FUNCTION keen.set_user_role(uuid, text);
DROP FUNCTION keen.reactivate_user(uuid);
DROP FUNCTION keen.suspend_user(uuid, text);
DROP FUNCTION keen.close_account();
DROP FUNCTION keen.use_recovery_code(text);
DROP FUNCTION keen.get_mfa_secret();
DROP FUNCTION keen.disable_mfa();
DROP FUNCTION keen.enable_mfa();
DROP FUNCTION keen.enroll_mfa(text, text[]);
DROP FUNCTION keen.change_email(text, text, timestamptz);
DROP FUNCTION keen.confirm_email(text);
DROP FUNCTION keen.start_email_verification(text, timestamptz);
DROP FUNCTION keen.change_password(text, boolean);
DROP FUNCTION keen.update_profile(text, text, text, jsonb);
DROP FUNCTION keen.set_client_ip(inet);
DROP FUNCTION keen.redact_audit_changes(jsonb);
DROP FUNCTION keen.lock_account(uuid, boolean);
DROP FUNCTION keen.check_token_expiry(timestamptz);
DROP FUNCTION keen.check_secret_hash(text, text);
DROP FUNCTION keen.invalid_argument(text, text, text);
DROP INDEX keen.users_billing_customer_id_key;
DROP INDEX keen.users_email_verification_token_idx;
ALTER TABLE keen.users
  DROP CONSTRAINT users_erased_identity_check,
  DROP CONSTRAINT users_recovery_codes_check,
  DROP CONSTRAINT users_mfa_secret_check,
  DROP CONSTRAINT users_email_verification_expires_at_check,
  DROP CONSTRAINT users_email_verification_token_check,
  DROP CONSTRAINT users_suspended_reason_check,
  DROP CONSTRAINT users_preferences_check,
  DROP CONSTRAINT users_display_name_check,
  DROP COLUMN suspended_reason,
  DROP COLUMN email_verification_expires_at,
  DROP COLUMN billing_customer_id,
  DROP COLUMN avatar_url;

RESET ROLE;
