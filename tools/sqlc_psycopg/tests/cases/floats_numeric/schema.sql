CREATE TABLE measures (
  id    integer PRIMARY KEY,
  r     real NOT NULL,
  d     double precision NOT NULL,
  f     float,
  n     numeric NOT NULL,
  money_ numeric(12, 2),
  dec   decimal(5, 1)
);
