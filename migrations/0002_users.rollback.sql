-- Roll back 0002_users: users, tokens and their functions.
SET ROLE keen_owner;
DROP FUNCTION keen.revoke_token(uuid);
DROP FUNCTION keen.rotate_refresh_token(text, text, timestamptz, inet, text);
DROP FUNCTION keen.authenticate_token(text, inet);
DROP FUNCTION keen.create_auth_token(text, text, text, text[], timestamptz, integer, inet, text);
DROP FUNCTION keen.record_login(inet);
DROP FUNCTION keen.login_lookup(text);
DROP FUNCTION keen.register_user(text, text, text, text, text);
DROP FUNCTION keen.is_time_zone(text);
DROP TABLE keen.auth_tokens;
DROP FUNCTION keen.tg_auth_tokens__guard();
DROP TABLE keen.users;
RESET ROLE;
