CREATE TABLE items (
  id    integer PRIMARY KEY,
  name  text NOT NULL,
  note  text,
  price numeric NOT NULL CHECK (price >= 0),
  list  integer[] NOT NULL DEFAULT '{}'  -- a column named like a builtin: field list_
);

CREATE FUNCTION item_stats()
RETURNS TABLE (n bigint, total numeric, longest_note text)
LANGUAGE sql STABLE AS $$
  SELECT count(*), coalesce(sum(price), 0), max(note) FROM items
$$;
