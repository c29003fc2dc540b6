CREATE TYPE color AS ENUM ('red', 'green', 'blue');
CREATE TABLE items (
  id      integer PRIMARY KEY,
  label   text NOT NULL,
  note    text,
  colors  color[] NOT NULL,
  attrs   jsonb NOT NULL,
  payload bytea,
  price   numeric(10, 2) NOT NULL
);
