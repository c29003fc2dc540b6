-- Analytics benchmark seed: :users users in six time zones, :sessions agent sessions over
-- the last 30 days (groups of four: a root and three children, 80% completed, 12% failed,
-- 6% cancelled, 2% running when recent), and a consistent ledger: one purchase per user
-- and one usage entry per charged session, balances carried forward.
--
-- A bulk load runs with triggers off (session_replication_role = replica: the ledger's
-- posting triggers and the stats triggers alike, which fire per row) and then rebuilds
-- daily_usage_stats in one pass with keen.rebuild_usage_stats(), the operators' path for
-- backfills. Deterministic: ids and figures derive from the row number (md5), not random().
-- Run as a superuser: psql -v users=10000 -v sessions=1000000 -f seed.sql
\set ON_ERROR_STOP on
SET session_replication_role = replica;
SET jit = off;

INSERT INTO keen.users (id, email, username, password_hash, timezone)
SELECT md5('bench-user-' || i)::uuid, 'u' || i || '@bench.example', 'bench_u' || i, repeat('h', 40),
       (ARRAY['UTC', 'Europe/Paris', 'America/New_York', 'Asia/Tokyo', 'Asia/Kolkata',
              'America/Los_Angeles'])[1 + i % 6]
FROM generate_series(1, :users) AS i;

INSERT INTO keen.credit_accounts (user_id)
SELECT md5('bench-user-' || i)::uuid FROM generate_series(1, :users) AS i;

INSERT INTO keen.agent_sessions (id, user_id, session_id, parent_session_id, session_depth, git_branch,
                                 vision, working_directory, current_phase, start_time, end_time,
                                 last_activity_at, execution_status, iteration_count, tool_calls_count,
                                 tokens_used, total_cost)
SELECT md5('bench-session-' || s.i)::uuid,
       md5('bench-user-' || (1 + s.g % :users))::uuid,
       'bench-' || s.i,
       CASE WHEN s.k > 0 THEN md5('bench-session-' || s.g * 4)::uuid END,
       (s.k > 0)::integer,
       'main', 'benchmark session', '/work',
       CASE s.status WHEN 'completed' THEN 'COMPLETE' ELSE 'PLAN' END,
       s.started,
       s.ended,
       coalesce(s.ended, s.started),
       s.status,
       1 + s.i % 9,
       s.i * 13 % 120,
       1000 + s.i * 7877 % 200000,
       round((1000 + s.i * 7877 % 200000) * 0.00003, 6)
FROM (
  SELECT b.i, b.g, b.k, b.started,
         CASE WHEN b.status = 'running' THEN NULL
              ELSE LEAST(now(), b.started + (30 + b.i * 31 % 7200) * interval '1 second') END AS ended,
         b.status
  FROM (
    SELECT a.i, a.g, a.k, a.started,
           CASE WHEN a.r < 80 THEN 'completed' WHEN a.r < 92 THEN 'failed' WHEN a.r < 98 THEN 'cancelled'
                WHEN a.started > now() - interval '6 hours' THEN 'running' ELSE 'completed' END AS status
    FROM (
      SELECT i, i / 4 AS g, i % 4 AS k,
             now() - (('x' || substr(md5('bench-group-' || i / 4), 1, 8))::bit(32)::bigint / 4294967296.0)
                     * interval '30 days' - (3 - i % 4) * interval '2 minutes' AS started,
             ('x' || substr(md5('bench-status-' || i), 1, 8))::bit(32)::bigint % 100 AS r
      FROM generate_series(0::bigint, :sessions - 1) AS i
    ) AS a
  ) AS b
) AS s
-- In time order, as live traffic writes them: recent rows share pages, as in production.
ORDER BY s.started;

-- The ledger: a purchase 31 days ago, then the charge of each finished session at its end,
-- rounded up to the ledger's 4 places (keen.round_cost), balances as running sums.
WITH entries AS (
  SELECT u.user_id, NULL::uuid AS session_id, now() - interval '31 days' AS at, 100000::numeric AS amount
  FROM keen.credit_accounts AS u
  UNION ALL
  SELECT s.user_id, s.id, s.end_time, -keen.round_cost(s.total_cost)
  FROM keen.agent_sessions AS s
  WHERE s.execution_status IN ('completed', 'failed') AND s.total_cost > 0
), numbered AS (
  SELECT e.*, row_number() OVER w AS entry_no, sum(e.amount) OVER w AS balance_after
  FROM entries AS e
  WINDOW w AS (PARTITION BY e.user_id ORDER BY e.at, e.session_id NULLS FIRST
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
INSERT INTO keen.credit_transactions (user_id, account_id, entry_no, transaction_type, amount, balance_before,
                                      balance_after, session_id, description, created_at)
SELECT n.user_id, a.id, n.entry_no, CASE WHEN n.amount > 0 THEN 'purchase' ELSE 'usage' END, n.amount,
       n.balance_after - n.amount, n.balance_after, n.session_id, 'bench seed', n.at
FROM numbered AS n
JOIN keen.credit_accounts AS a ON a.user_id = n.user_id
ORDER BY n.at;

UPDATE keen.credit_accounts AS a
SET current_balance = t.balance, last_entry_no = t.last, lifetime_purchased = t.bought, lifetime_spent = t.spent
FROM (SELECT account_id, sum(amount) AS balance, max(entry_no) AS last,
             sum(amount) FILTER (WHERE amount > 0) AS bought, coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS spent
      FROM keen.credit_transactions GROUP BY account_id) AS t
WHERE t.account_id = a.id;

SET session_replication_role = origin;
\timing on
SELECT keen.rebuild_usage_stats() AS stats_rows_written;
\timing off
VACUUM (ANALYZE) keen.users, keen.credit_accounts, keen.agent_sessions, keen.credit_transactions,
  keen.daily_usage_stats;
