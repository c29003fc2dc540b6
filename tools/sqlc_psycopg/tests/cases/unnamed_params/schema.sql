CREATE TABLE pairs (
  a integer NOT NULL,
  b integer NOT NULL
);
