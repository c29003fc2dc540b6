CREATE TABLE kv (
  k text PRIMARY KEY,
  v text NOT NULL
);
