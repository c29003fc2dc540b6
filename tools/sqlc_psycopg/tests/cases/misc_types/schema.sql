CREATE TABLE misc (
  id     integer PRIMARY KEY,
  ok     boolean NOT NULL,
  bits   bit(4),
  vbits  bit varying(8),
  cash   money,
  doc    tsvector,
  spot   point,
  mac    macaddr,
  loc    pg_lsn
);
