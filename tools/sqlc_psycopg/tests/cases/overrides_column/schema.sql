CREATE SCHEMA shop;
CREATE TABLE shop.orders (
  id       integer PRIMARY KEY,
  note     text,
  total    numeric NOT NULL,
  meta     json
);
