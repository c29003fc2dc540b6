CREATE TABLE hosts (
  id     integer PRIMARY KEY,
  addr   inet NOT NULL,
  net    cidr,
  extras inet[]
);
