CREATE TABLE texts (
  id   integer PRIMARY KEY,
  t    text NOT NULL,
  v    varchar(10),
  c    char(3),
  vv   character varying,
  n    name,
  x    xml,
  q    "char"
);
