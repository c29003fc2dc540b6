CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TYPE point2 AS (x integer, y integer);
CREATE TABLE things (
  id        bigint PRIMARY KEY,
  "class"   text NOT NULL,
  owner     uuid NOT NULL,
  price     numeric(10, 2),
  ratio     double precision NOT NULL,
  flag      boolean NOT NULL,
  blob      bytea,
  doc       jsonb NOT NULL,
  tags      text[] NOT NULL,
  grid      integer[][],
  moods     mood[] NOT NULL,
  mood      mood NOT NULL,
  at        point2,
  seen      timestamptz NOT NULL,
  day       date NOT NULL,
  span      interval NOT NULL,
  addr      inet
);
