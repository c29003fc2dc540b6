CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE point2 AS (x integer, y integer);
CREATE TYPE place AS (
  name  text,            -- a label
  at    point2,          -- nested composite
  mood  mood,            -- enum inside a composite
  tags  text[]
);
COMMENT ON TYPE place IS 'A named point.';
CREATE TABLE trips (
  id     integer PRIMARY KEY,
  start  place NOT NULL,
  stops  place[] NOT NULL DEFAULT '{}',
  corner point2
);
