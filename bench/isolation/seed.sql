-- Isolation bench data: :tenants users with a credit account and :entries ledger entries
-- each, and :sessions agent sessions spread evenly over them. Bulk INSERT … SELECT from
-- generate_series with triggers off (session_replication_role = replica, superuser only):
-- the rows are generated consistent (balances chain, one account per user).
SET session_replication_role = replica;

INSERT INTO keen.users (id, email, username, password_hash)
SELECT md5('bench-user-' || g)::uuid, 'user' || g || '@bench.example', 'user' || g, repeat('h', 40)
FROM generate_series(1, :tenants) AS g;

INSERT INTO keen.credit_accounts (user_id, current_balance, lifetime_purchased, last_entry_no)
SELECT u.id, :entries * 10, :entries * 10, :entries FROM keen.users AS u;

INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount,
                                      balance_before, balance_after, description, created_at)
SELECT a.user_id, a.id, e, 'purchase', 10, (e - 1) * 10, e * 10, 'bench top-up',
       now() - make_interval(hours => :entries - e)
FROM keen.credit_accounts AS a CROSS JOIN generate_series(1, :entries) AS e;

INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory,
                                 start_time, last_activity_at, phase_started_at)
SELECT u.id, 's-' || s, 'main', 'bench session', '/work',
       now() - make_interval(mins => (s * 7 + u.n % 7)::integer), now(), now()
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM keen.users) AS u
CROSS JOIN generate_series(1, :sessions / :tenants) AS s;

RESET session_replication_role;
VACUUM ANALYZE keen.users, keen.credit_accounts, keen.credit_transactions, keen.agent_sessions;
