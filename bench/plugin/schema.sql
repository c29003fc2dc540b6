-- The benchmark's table: a typical row of mixed types.
CREATE TABLE bench_accounts (
  id         bigint PRIMARY KEY,
  owner      uuid NOT NULL,
  email      text NOT NULL,
  balance    numeric(14, 4) NOT NULL,
  active     boolean NOT NULL,
  created_at timestamptz NOT NULL,
  note       text
);
