CREATE TABLE ledger (
  id      integer PRIMARY KEY,
  account text NOT NULL,
  amount  numeric(12, 4) NOT NULL
);

CREATE FUNCTION balance_of(p_account text) RETURNS numeric
LANGUAGE sql STABLE AS $$
  SELECT coalesce(sum(amount), 0) FROM ledger WHERE account = p_account
$$;
COMMENT ON FUNCTION balance_of(text) IS 'The sum of the account''s entries (0 without any).';

CREATE FUNCTION statement_of(p_account text)
RETURNS TABLE (entry_id integer, amount numeric, running numeric)
LANGUAGE sql STABLE AS $$
  SELECT id, amount, sum(amount) OVER (ORDER BY id) FROM ledger WHERE account = p_account ORDER BY id
$$;
COMMENT ON FUNCTION statement_of(text) IS 'Entries of an account with the running balance.';

CREATE FUNCTION post(p_id integer, p_account text, p_amount numeric) RETURNS ledger
LANGUAGE sql VOLATILE AS $$
  INSERT INTO ledger (id, account, amount) VALUES (p_id, p_account, p_amount) RETURNING *
$$;
