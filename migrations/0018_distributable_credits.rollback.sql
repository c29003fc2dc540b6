-- Roll back 0018_distributable_credits: the credit and analytics functions as 0014 left them.
SET ROLE keen_owner;

CREATE OR REPLACE FUNCTION keen.tg_credit_transactions__append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF keen.in_migration() THEN
    RETURN CASE TG_OP WHEN 'UPDATE' THEN NEW WHEN 'DELETE' THEN OLD END;
  END IF;
  RAISE EXCEPTION 'the credit ledger is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'Correct an entry with a new one (refund or adjustment).';
END
$$;

CREATE OR REPLACE FUNCTION keen.add_ledger_usage(p_user_id uuid, p_day date, p_type text, p_amount numeric)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- The attribution rule of keen.ledger_usage: one ledger row is one figure of one day.
  v_purchased numeric := CASE p_type WHEN 'purchase' THEN p_amount ELSE 0 END;
  v_spent numeric := CASE p_type WHEN 'usage' THEN -p_amount ELSE 0 END;
  v_refunded numeric := CASE p_type WHEN 'refund' THEN p_amount ELSE 0 END;
  v_adjusted numeric := CASE p_type WHEN 'adjustment' THEN p_amount ELSE 0 END;
BEGIN
  -- The caller holds the account lock (taken before this row's by every transaction). The
  -- day's row usually exists: add to it; else create it (every figure added is >= 0 but the
  -- signed adjustment, which no CHECK bounds, so INSERT … ON CONFLICT is safe here).
  UPDATE keen.daily_usage_stats AS d
     SET credits_purchased = d.credits_purchased + v_purchased, credits_spent = d.credits_spent + v_spent,
         credits_refunded = d.credits_refunded + v_refunded, credits_adjusted = d.credits_adjusted + v_adjusted,
         updated_at = pg_catalog.now()
   WHERE d.user_id = p_user_id AND d.date_bucket = p_day;
  IF NOT FOUND THEN
    INSERT INTO keen.daily_usage_stats AS d
           (user_id, date_bucket, credits_purchased, credits_spent, credits_refunded, credits_adjusted)
    VALUES (p_user_id, p_day, v_purchased, v_spent, v_refunded, v_adjusted)
    ON CONFLICT (user_id, date_bucket) DO UPDATE
       SET credits_purchased = d.credits_purchased + v_purchased, credits_spent = d.credits_spent + v_spent,
           credits_refunded = d.credits_refunded + v_refunded, credits_adjusted = d.credits_adjusted + v_adjusted,
           updated_at = pg_catalog.now()
     WHERE d.user_id = p_user_id;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION keen.post_credit(
  p_user_id uuid,
  p_amount numeric,
  p_transaction_type text,
  p_description text,
  p_idempotency_key text,
  p_stripe_payment_intent_id text,
  p_metadata jsonb)
RETURNS keen.credit_transactions
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now timestamptz := pg_catalog.now();
  v_amount numeric;
  -- NULL means the default, as for every optional argument.
  v_type text := coalesce(p_transaction_type, 'purchase');
  v_fingerprint text;
  v_account record;  -- the account row and the user's time zone
  v_entry keen.credit_transactions;
BEGIN
  -- 1. Validate.
  IF p_amount IS NULL OR NOT (p_amount > 0 AND p_amount < 100000000) OR p_amount <> pg_catalog.round(p_amount, 4) THEN
    PERFORM keen.validate_credit_amount(p_amount);
  END IF;
  v_amount := pg_catalog.round(p_amount, 4);
  IF v_type NOT IN ('purchase', 'refund', 'adjustment') THEN
    RAISE EXCEPTION 'invalid transaction type for add_credits: %', keen.text_prefix(v_type)
      USING ERRCODE = 'KE013', HINT = 'One of purchase, refund, adjustment.';
  END IF;
  IF pg_catalog.length(p_description) NOT BETWEEN 1 AND 1000 THEN
    PERFORM keen.check_text(p_description, 'description', 1000);
  END IF;
  IF pg_catalog.length(p_idempotency_key) NOT BETWEEN 1 AND 255 THEN
    PERFORM keen.check_text(p_idempotency_key, 'idempotency key', 255);
  END IF;
  IF pg_catalog.length(p_stripe_payment_intent_id) NOT BETWEEN 1 AND 255 THEN
    PERFORM keen.check_text(p_stripe_payment_intent_id, 'payment intent id', 255);
  END IF;
  IF pg_catalog.pg_column_size(p_metadata) > 16384 THEN
    PERFORM keen.check_jsonb(p_metadata, 'metadata', 16384);
  END IF;
  v_fingerprint := pg_catalog.md5('add:' || pg_catalog.jsonb_build_object(
    'amount', pg_catalog.trim_scale(v_amount), 'transaction_type', v_type,
    'description', p_description, 'stripe_payment_intent_id', p_stripe_payment_intent_id,
    'metadata', p_metadata)::text);
  -- 2. Lock the account, with the user's time zone.
  SELECT a.*, u.timezone INTO v_account
    FROM keen.credit_accounts AS a LEFT JOIN keen.users AS u ON u.id = p_user_id
   WHERE a.user_id = p_user_id
     FOR UPDATE OF a;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'credit account not found for user %', p_user_id USING ERRCODE = 'KE006';
  END IF;
  -- 3. A retried key returns its entry.
  IF p_idempotency_key IS NOT NULL THEN
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
     WHERE t.user_id = p_user_id AND t.account_id = v_account.id AND t.idempotency_key = p_idempotency_key;
    IF FOUND AND v_entry.request_fingerprint IS DISTINCT FROM v_fingerprint THEN
      RAISE EXCEPTION 'idempotency key % was used with different arguments', keen.text_prefix(p_idempotency_key)
        USING ERRCODE = 'KE005',
              DETAIL = pg_catalog.format('original entry %s (%s %s)', v_entry.id, v_entry.transaction_type, v_entry.amount),
              HINT = 'Use a new key for a new operation.';
    END IF;
  END IF;
  -- A payment intent is credited once per tenant: a retry with the same arguments (and key)
  -- gets the original entry, anything else KE005 (never a raw unique violation).
  IF v_entry.id IS NULL AND p_stripe_payment_intent_id IS NOT NULL THEN
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
     WHERE t.user_id = p_user_id AND t.stripe_payment_intent_id = p_stripe_payment_intent_id;
    IF FOUND AND (v_entry.request_fingerprint IS DISTINCT FROM v_fingerprint
                  OR v_entry.idempotency_key IS DISTINCT FROM p_idempotency_key) THEN
      RAISE EXCEPTION 'payment intent % was credited with different arguments', keen.text_prefix(p_stripe_payment_intent_id)
        USING ERRCODE = 'KE005', HINT = 'A payment intent credits once: retry with the same arguments and key.';
    END IF;
  END IF;
  IF v_entry.id IS NOT NULL THEN
    RETURN v_entry;
  END IF;
  -- 4. State: a suspended account may still receive credits, a closed one nothing.
  IF v_account.account_status = 'closed' THEN
    RAISE EXCEPTION 'credit account % is %', v_account.id, v_account.account_status
      USING ERRCODE = 'KE012', DETAIL = coalesce(v_account.suspended_reason, '');
  END IF;
  -- The balance column holds less than 10^8 (and the lifetime totals less than 10^10).
  IF v_account.current_balance + v_amount >= 100000000
     OR (v_type = 'purchase' AND v_account.lifetime_purchased + v_amount >= 10000000000) THEN
    RAISE EXCEPTION 'invalid amount: % would take the balance % past its ceiling 99999999.9999', v_amount,
        v_account.current_balance
      USING ERRCODE = 'KE004';
  END IF;
  -- 5. The ledger row.
  INSERT INTO keen.credit_transactions AS t
         (id, user_id, account_id, entry_no, transaction_type, amount, balance_before, balance_after,
          description, metadata, idempotency_key, request_fingerprint, stripe_payment_intent_id, created_at)
  VALUES (CASE WHEN p_idempotency_key IS NULL THEN pg_catalog.gen_random_uuid()
               ELSE pg_catalog.md5(v_account.id::text || ':entry:' || p_idempotency_key)::uuid END,
          p_user_id, v_account.id, v_account.last_entry_no + 1, v_type, v_amount,
          v_account.current_balance, v_account.current_balance + v_amount, coalesce(p_description, v_type),
          coalesce(p_metadata, '{}'::jsonb), p_idempotency_key, v_fingerprint, p_stripe_payment_intent_id, v_now)
  RETURNING t.* INTO v_entry;
  -- 6. The account follows it.
  UPDATE keen.credit_accounts AS a
     SET current_balance = v_entry.balance_after, last_entry_no = v_entry.entry_no,
         lifetime_purchased = a.lifetime_purchased + CASE v_type WHEN 'purchase' THEN v_amount ELSE 0 END,
         updated_at = v_now
   WHERE a.user_id = p_user_id;
  -- 7. The day's statistics.
  PERFORM keen.add_ledger_usage(p_user_id, (v_now AT TIME ZONE coalesce(v_account.timezone, 'UTC'))::date, v_type, v_amount);
  RETURN v_entry;
END
$$;

CREATE OR REPLACE FUNCTION keen.verify_ledger()
RETURNS TABLE (account_id uuid, user_id uuid, invariant text, detail text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH sums AS (
    SELECT a.id, a.user_id, a.current_balance, a.held_amount, a.lifetime_purchased, a.lifetime_spent,
           a.last_entry_no, a.spent_today_date, a.spent_today, a.spent_month_start, a.spent_this_month,
           coalesce(sum(t.amount), 0) AS total,
           coalesce(sum(t.amount) FILTER (WHERE t.transaction_type = 'purchase'), 0) AS purchased,
           coalesce(-sum(t.amount) FILTER (WHERE t.transaction_type = 'usage'), 0) AS spent,
           coalesce(max(t.entry_no), 0) AS max_entry,
           coalesce(-sum(t.amount) FILTER (WHERE t.transaction_type = 'usage' AND
             keen.credit_local_date(a.user_id, t.created_at) = a.spent_today_date), 0) AS spent_day,
           coalesce(-sum(t.amount) FILTER (WHERE t.transaction_type = 'usage' AND
             pg_catalog.date_trunc('month', keen.credit_local_date(a.user_id, t.created_at))::date
               = a.spent_month_start), 0) AS spent_month
      FROM keen.credit_accounts AS a
      LEFT JOIN keen.credit_transactions AS t ON t.user_id = a.user_id AND t.account_id = a.id
     GROUP BY a.user_id, a.id
  ), chain AS (
    SELECT t.account_id, t.user_id, t.entry_no, t.amount, t.balance_before, t.balance_after,
           coalesce(lag(t.balance_after) OVER w, 0) AS previous_after,
           row_number() OVER w AS position
      FROM keen.credit_transactions AS t
    WINDOW w AS (PARTITION BY t.user_id, t.account_id ORDER BY t.entry_no)
  ), holds AS (
    SELECT a.id, a.user_id, a.held_amount,
           coalesce(sum(h.amount) FILTER (WHERE h.status = 'active'), 0) AS active
      FROM keen.credit_accounts AS a
      LEFT JOIN keen.credit_holds AS h ON h.user_id = a.user_id AND h.account_id = a.id
     GROUP BY a.user_id, a.id
  )
  SELECT s.id, s.user_id, 'balance_equals_ledger_sum',
         pg_catalog.format('balance %s, sum of amounts %s', s.current_balance, s.total)
    FROM sums AS s WHERE s.current_balance <> s.total
  UNION ALL
  SELECT s.id, s.user_id, 'last_entry_no',
         pg_catalog.format('last_entry_no %s, newest entry %s', s.last_entry_no, s.max_entry)
    FROM sums AS s WHERE s.last_entry_no <> s.max_entry
  UNION ALL
  SELECT s.id, s.user_id, 'lifetime_purchased',
         pg_catalog.format('lifetime_purchased %s, purchases %s', s.lifetime_purchased, s.purchased)
    FROM sums AS s WHERE s.lifetime_purchased <> s.purchased
  UNION ALL
  SELECT s.id, s.user_id, 'lifetime_spent',
         pg_catalog.format('lifetime_spent %s, usage %s', s.lifetime_spent, s.spent)
    FROM sums AS s WHERE s.lifetime_spent <> s.spent
  UNION ALL
  SELECT s.id, s.user_id, 'spending_counters',
         pg_catalog.format('spent_today %s (ledger %s), spent_this_month %s (ledger %s)',
                           s.spent_today, s.spent_day, s.spent_this_month, s.spent_month)
    FROM sums AS s WHERE s.spent_today <> s.spent_day OR s.spent_this_month <> s.spent_month
  UNION ALL
  SELECT s.id, s.user_id, 'non_negative_balance', pg_catalog.format('balance %s', s.current_balance)
    FROM sums AS s WHERE s.current_balance < 0
  UNION ALL
  SELECT s.id, s.user_id, 'non_negative_available',
         pg_catalog.format('balance %s, held %s', s.current_balance, s.held_amount)
    FROM sums AS s WHERE s.current_balance - s.held_amount < 0
  UNION ALL
  SELECT c.account_id, c.user_id, 'balance_chain',
         pg_catalog.format('entry %s: before %s (previous after %s), amount %s, after %s, position %s',
                           c.entry_no, c.balance_before, c.previous_after, c.amount, c.balance_after, c.position)
    FROM chain AS c
   WHERE c.balance_before <> c.previous_after OR c.balance_after <> c.balance_before + c.amount
      OR c.entry_no <> c.position
  UNION ALL
  SELECT h.id, h.user_id, 'held_amount_equals_active_holds',
         pg_catalog.format('held_amount %s, active holds %s', h.held_amount, h.active)
    FROM holds AS h WHERE h.held_amount <> h.active
  UNION ALL
  SELECT h.account_id, h.user_id, 'captured_hold_has_entry',
         pg_catalog.format('hold %s captured %s', h.id, h.captured_amount)
    FROM keen.credit_holds AS h
   WHERE h.status = 'captured'
     AND NOT EXISTS (SELECT FROM keen.credit_transactions AS t
                      WHERE t.user_id = h.user_id AND t.id = h.capture_transaction_id AND t.hold_id = h.id
                        AND t.amount = -h.captured_amount)
$$;

CREATE OR REPLACE FUNCTION keen.sweep_expired_holds()
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid;
  v_expired integer;
  v_count integer := 0;
BEGIN
  -- Per tenant (a Citus-ready operator job), each under its account lock, in user order.
  FOR v_user_id IN
    SELECT DISTINCT h.user_id FROM keen.credit_holds AS h
     WHERE h.status = 'active' AND h.expires_at <= pg_catalog.now()
     ORDER BY h.user_id
  LOOP
    PERFORM FROM keen.credit_accounts AS a WHERE a.user_id = v_user_id FOR UPDATE;
    SELECT e.p_expired INTO v_expired FROM keen.expire_lapsed_holds(v_user_id) AS e;
    v_count := v_count + v_expired;
  END LOOP;
  RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION keen.claim_recharge_requests(
  p_limit integer DEFAULT 10,
  p_reclaim_after interval DEFAULT '15 minutes')
RETURNS SETOF keen.recharge_requests
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  -- SKIP LOCKED: several billing workers claim disjoint requests. A request left in
  -- 'processing' longer than p_reclaim_after (its worker died) is claimed again, so one
  -- crashed worker cannot block an account's auto-recharge for good; completing is
  -- idempotent, so a late first worker and the second one credit once.
  UPDATE keen.recharge_requests AS r
     SET status = 'processing', claimed_at = pg_catalog.now(), attempts = r.attempts + 1
   WHERE r.id IN (SELECT q.id FROM keen.recharge_requests AS q
                   WHERE q.status = 'pending'
                      OR (q.status = 'processing'
                          AND q.claimed_at < pg_catalog.now() - coalesce(p_reclaim_after, interval '15 minutes'))
                   ORDER BY q.created_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
  RETURNING r.*
$$;

CREATE OR REPLACE FUNCTION keen.complete_recharge_request(
  p_request_id uuid,
  p_stripe_payment_intent_id text DEFAULT NULL)
RETURNS keen.credit_transactions
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_request keen.recharge_requests;
  v_entry keen.credit_transactions;
BEGIN
  SELECT r.* INTO v_request FROM keen.recharge_requests AS r WHERE r.id = p_request_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'recharge request % not found', p_request_id USING ERRCODE = 'KE006';
  END IF;
  -- Account before request: the lock order of every credit function.
  PERFORM FROM keen.credit_accounts AS a WHERE a.user_id = v_request.user_id FOR UPDATE;
  SELECT r.* INTO v_request FROM keen.recharge_requests AS r
   WHERE r.user_id = v_request.user_id AND r.id = p_request_id
     FOR UPDATE;
  IF v_request.status = 'completed' THEN
    -- A repeated webhook gets the original purchase.
    SELECT t.* INTO v_entry FROM keen.credit_transactions AS t
     WHERE t.user_id = v_request.user_id AND t.id = v_request.purchase_transaction_id;
    RETURN v_entry;
  ELSIF v_request.status = 'failed' THEN
    RAISE EXCEPTION 'recharge request % already failed', p_request_id USING ERRCODE = 'KE007';
  END IF;
  -- The purchase is an ordinary credit movement, keyed by the request.
  v_entry := keen.post_credit(v_request.user_id, v_request.amount, 'purchase', 'auto-recharge',
                              'recharge:' || v_request.id::text, p_stripe_payment_intent_id,
                              pg_catalog.jsonb_build_object('recharge_request_id', v_request.id));
  UPDATE keen.recharge_requests AS r
     SET status = 'completed', resolved_at = pg_catalog.now(), purchase_transaction_id = v_entry.id
   WHERE r.user_id = v_request.user_id AND r.id = p_request_id;
  RETURN v_entry;
END
$$;

CREATE OR REPLACE FUNCTION keen.fail_recharge_request(p_request_id uuid, p_reason text DEFAULT NULL)
RETURNS keen.recharge_requests
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_request keen.recharge_requests;
BEGIN
  SELECT r.* INTO v_request FROM keen.recharge_requests AS r WHERE r.id = p_request_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'recharge request % not found', p_request_id USING ERRCODE = 'KE006';
  END IF;
  IF v_request.status NOT IN ('pending', 'processing') THEN
    RAISE EXCEPTION 'recharge request % is already %', p_request_id, v_request.status USING ERRCODE = 'KE007';
  END IF;
  -- Failing closes the request, so the next deduction below the threshold may open another.
  UPDATE keen.recharge_requests AS r
     SET status = 'failed', failure_reason = coalesce(p_reason, 'unspecified'), resolved_at = pg_catalog.now()
   WHERE r.id = p_request_id RETURNING r.* INTO v_request;
  RETURN v_request;
END
$$;

CREATE OR REPLACE FUNCTION keen.recompute_usage_stats(p_user_id uuid DEFAULT NULL)
RETURNS SETOF keen.usage_delta
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
  -- PL/pgSQL, not SQL: its custom plans see p_user_id's value, so one user's recomputation
  -- (a time zone change) reads that user's rows by index instead of scanning every session.
  RETURN QUERY
  SELECT d.user_id, d.date_bucket,
         pg_catalog.sum(d.sessions_started)::bigint, pg_catalog.sum(d.sessions_completed)::bigint,
         pg_catalog.sum(d.sessions_failed)::bigint, pg_catalog.sum(d.sessions_cancelled)::bigint,
         pg_catalog.sum(d.tokens_used)::bigint, pg_catalog.sum(d.tool_calls)::bigint,
         pg_catalog.sum(d.total_cost), pg_catalog.sum(d.credits_purchased),
         pg_catalog.sum(d.credits_spent), pg_catalog.sum(d.credits_refunded),
         pg_catalog.sum(d.credits_adjusted)
  FROM (
    SELECT x.*
    FROM keen.agent_sessions AS s
    JOIN keen.users AS u ON u.id = s.user_id
    CROSS JOIN LATERAL pg_catalog.unnest(keen.session_usage(s, u.timezone)) AS x
    WHERE p_user_id IS NULL OR s.user_id = p_user_id
    UNION ALL
    SELECT x.*
    FROM keen.credit_transactions AS t
    JOIN keen.users AS u ON u.id = t.user_id
    CROSS JOIN LATERAL pg_catalog.unnest(keen.ledger_usage(t, u.timezone)) AS x
    WHERE p_user_id IS NULL OR t.user_id = p_user_id
  ) AS d
  GROUP BY d.user_id, d.date_bucket;
END
$$;

CREATE OR REPLACE FUNCTION keen.rebuild_usage_stats(p_user_id uuid DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
-- JIT compilation costs more than it saves on these queries (1.3 s on 2 cores).
SET jit = off
AS $$
DECLARE
  v_changed bigint;
BEGIN
  -- Holds off every trigger upsert (ROW EXCLUSIVE) until this transaction ends, and waits
  -- for those in flight: the recomputation below then sees every committed change, and a
  -- change committed later adds its delta on top of the rebuilt figures.
  LOCK TABLE keen.daily_usage_stats IN SHARE ROW EXCLUSIVE MODE;
  WITH expected AS MATERIALIZED (
    SELECT e.* FROM keen.recompute_usage_stats(p_user_id) AS e
  ), zeroed AS (
    -- Days that no longer have any activity are zeroed rather than deleted (the service
    -- role has no DELETE); a missing row and a row of zeros mean the same.
    UPDATE keen.daily_usage_stats AS d
    SET sessions_started = 0, sessions_completed = 0, sessions_failed = 0, sessions_cancelled = 0,
        tokens_used = 0, tool_calls = 0, total_cost = 0, credits_purchased = 0,
        credits_spent = 0, credits_refunded = 0, credits_adjusted = 0,
        updated_at = pg_catalog.now()
    WHERE (p_user_id IS NULL OR d.user_id = p_user_id)
      AND NOT EXISTS (SELECT FROM expected AS e
                      WHERE e.user_id = d.user_id AND e.date_bucket = d.date_bucket)
      AND (d.sessions_started, d.sessions_completed, d.sessions_failed, d.sessions_cancelled,
           d.tokens_used, d.tool_calls, d.total_cost, d.credits_purchased, d.credits_spent,
           d.credits_refunded, d.credits_adjusted) <> (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    RETURNING 1
  ), written AS (
    INSERT INTO keen.daily_usage_stats AS d
      (user_id, date_bucket, sessions_started, sessions_completed, sessions_failed,
       sessions_cancelled, tokens_used, tool_calls, total_cost, credits_purchased,
       credits_spent, credits_refunded, credits_adjusted, updated_at)
    SELECT e.user_id, e.date_bucket, e.sessions_started, e.sessions_completed, e.sessions_failed,
           e.sessions_cancelled, e.tokens_used, e.tool_calls, e.total_cost, e.credits_purchased,
           e.credits_spent, e.credits_refunded, e.credits_adjusted, pg_catalog.now()
    FROM expected AS e
    ORDER BY e.user_id, e.date_bucket
    ON CONFLICT (user_id, date_bucket) DO UPDATE
    SET sessions_started = EXCLUDED.sessions_started,
        sessions_completed = EXCLUDED.sessions_completed,
        sessions_failed = EXCLUDED.sessions_failed,
        sessions_cancelled = EXCLUDED.sessions_cancelled,
        tokens_used = EXCLUDED.tokens_used,
        tool_calls = EXCLUDED.tool_calls,
        total_cost = EXCLUDED.total_cost,
        credits_purchased = EXCLUDED.credits_purchased,
        credits_spent = EXCLUDED.credits_spent,
        credits_refunded = EXCLUDED.credits_refunded,
        credits_adjusted = EXCLUDED.credits_adjusted,
        updated_at = EXCLUDED.updated_at
    -- Rows already right are left alone (no dead tuple, no new updated_at).
    WHERE (d.sessions_started, d.sessions_completed, d.sessions_failed, d.sessions_cancelled,
           d.tokens_used, d.tool_calls, d.total_cost, d.credits_purchased, d.credits_spent,
           d.credits_refunded, d.credits_adjusted)
          IS DISTINCT FROM
          (EXCLUDED.sessions_started, EXCLUDED.sessions_completed, EXCLUDED.sessions_failed,
           EXCLUDED.sessions_cancelled, EXCLUDED.tokens_used, EXCLUDED.tool_calls,
           EXCLUDED.total_cost, EXCLUDED.credits_purchased, EXCLUDED.credits_spent,
           EXCLUDED.credits_refunded, EXCLUDED.credits_adjusted)
    RETURNING 1
  )
  SELECT (SELECT pg_catalog.count(*) FROM zeroed) + (SELECT pg_catalog.count(*) FROM written)
  INTO v_changed;
  RETURN v_changed;
END
$$;

CREATE OR REPLACE FUNCTION keen.verify_usage_stats()
RETURNS TABLE (user_id uuid, date_bucket date, figure text, recorded numeric, expected numeric)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
-- JIT compilation costs more than it saves on these queries (1.3 s on 2 cores).
SET jit = off
AS $$
  SELECT coalesce(r.user_id, e.user_id), coalesce(r.date_bucket, e.date_bucket),
         f.figure, f.recorded, f.expected
  FROM keen.daily_usage_stats AS r
  FULL JOIN keen.recompute_usage_stats() AS e
    ON e.user_id = r.user_id AND e.date_bucket = r.date_bucket
  CROSS JOIN LATERAL (VALUES
    ('sessions_started', coalesce(r.sessions_started, 0), coalesce(e.sessions_started, 0)),
    ('sessions_completed', coalesce(r.sessions_completed, 0), coalesce(e.sessions_completed, 0)),
    ('sessions_failed', coalesce(r.sessions_failed, 0), coalesce(e.sessions_failed, 0)),
    ('sessions_cancelled', coalesce(r.sessions_cancelled, 0), coalesce(e.sessions_cancelled, 0)),
    ('tokens_used', coalesce(r.tokens_used, 0), coalesce(e.tokens_used, 0)),
    ('tool_calls', coalesce(r.tool_calls, 0), coalesce(e.tool_calls, 0)),
    ('total_cost', coalesce(r.total_cost, 0), coalesce(e.total_cost, 0)),
    ('credits_purchased', coalesce(r.credits_purchased, 0), coalesce(e.credits_purchased, 0)),
    ('credits_spent', coalesce(r.credits_spent, 0), coalesce(e.credits_spent, 0)),
    ('credits_refunded', coalesce(r.credits_refunded, 0), coalesce(e.credits_refunded, 0)),
    ('credits_adjusted', coalesce(r.credits_adjusted, 0), coalesce(e.credits_adjusted, 0))
  ) AS f(figure, recorded, expected)
  WHERE f.recorded <> f.expected
  ORDER BY 1, 2, 3
$$;

CREATE OR REPLACE FUNCTION keen.session_cost_breakdown(p_session_id text)
RETURNS TABLE (
  id uuid, session_id text, parent_session_id uuid, depth integer, path text[],
  execution_status text, own_cost numeric, tree_cost numeric, own_tokens bigint,
  tree_tokens bigint, descendants integer, own_charged numeric, tree_charged numeric)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user_id uuid;
BEGIN
  v_user_id := keen.require_user_id();
  -- keen.session_tree walks the tree (KE006 when the session is not the caller's) and
  -- gives its order; path lists the session ids from the root down to each node.
  RETURN QUERY
  WITH tree AS MATERIALIZED (
    SELECT t.id, t.session_id, t.parent_session_id, t.depth, t.path, t.execution_status,
           t.total_cost, t.tokens_used, pg_catalog.row_number() OVER () AS ord
    FROM keen.session_tree(p_session_id) AS t
  ), charged AS (
    -- What the ledger actually charged per session: usage minus refunds tied to it.
    SELECT x.session_id AS id, -pg_catalog.sum(x.amount) AS charged
    FROM keen.credit_transactions AS x
    WHERE x.user_id = v_user_id AND x.session_id IN (SELECT t.id FROM tree AS t)
      AND x.transaction_type IN ('usage', 'refund')
    GROUP BY x.session_id
  ), rollup AS (
    -- Each session's subtree: every node counts for itself and for each of its ancestors.
    SELECT a.session_id, pg_catalog.sum(t.total_cost) AS tree_cost,
           pg_catalog.sum(t.tokens_used) AS tree_tokens,
           pg_catalog.count(*) - 1 AS descendants,
           pg_catalog.sum(coalesce(ch.charged, 0)) AS tree_charged
    FROM tree AS t
    LEFT JOIN charged AS ch ON ch.id = t.id
    CROSS JOIN LATERAL pg_catalog.unnest(t.path) AS a(session_id)
    GROUP BY a.session_id
  )
  SELECT t.id, t.session_id, t.parent_session_id, t.depth, t.path, t.execution_status,
         t.total_cost::numeric, r.tree_cost::numeric, t.tokens_used, r.tree_tokens::bigint,
         r.descendants::integer, coalesce(ch.charged, 0)::numeric, r.tree_charged::numeric
  FROM tree AS t
  JOIN rollup AS r ON r.session_id = t.session_id
  LEFT JOIN charged AS ch ON ch.id = t.id
  ORDER BY t.ord;
END
$$;

RESET ROLE;
