CREATE TABLE sales (
  id     integer PRIMARY KEY,
  region text NOT NULL,
  amount numeric NOT NULL
);
CREATE VIEW region_totals AS
  SELECT region, sum(amount) AS total, count(*) AS n FROM sales GROUP BY region;
COMMENT ON VIEW region_totals IS 'Sales summed per region.';
-- sqlc types the view's sum(numeric) as an integer; case.json overrides the column.
