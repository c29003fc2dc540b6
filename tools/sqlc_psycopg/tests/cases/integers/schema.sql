CREATE TABLE nums (
  id  serial PRIMARY KEY,
  s   smallint NOT NULL,
  i   integer NOT NULL,
  b   bigint NOT NULL,
  big bigserial NOT NULL,
  o   oid,
  n   int4
);
