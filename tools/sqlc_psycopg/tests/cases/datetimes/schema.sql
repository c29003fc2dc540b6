CREATE TABLE slots (
  id       integer PRIMARY KEY,
  at       timestamptz NOT NULL,
  local_at timestamp,
  day      date NOT NULL,
  clock    time,
  clock_tz timetz,
  span     interval NOT NULL
);
