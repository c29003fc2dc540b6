CREATE TABLE docs (
  id    integer PRIMARY KEY,
  body  jsonb NOT NULL,
  raw   json,
  tags  jsonb[]
);
