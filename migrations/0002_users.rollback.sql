-- Roll back 0002_users: users, tokens and their functions.
SET ROLE keen_owner;
DROP TABLE keen.auth_tokens;
DROP TABLE keen.users;
RESET ROLE;
