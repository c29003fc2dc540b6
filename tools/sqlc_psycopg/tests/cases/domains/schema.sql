CREATE TYPE level AS ENUM ('low', 'high');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
CREATE DOMAIN email AS text CONSTRAINT email_check CHECK (VALUE LIKE '%@%');
CREATE DOMAIN money4 numeric(14, 4) NOT NULL DEFAULT 0;
CREATE DOMAIN priority AS level;
CREATE TABLE accounts (
  id       positive_int PRIMARY KEY,
  contact  email NOT NULL,
  balance  money4 NOT NULL,
  prio     priority,
  backups  email[],
  levels   priority[],
  steps    positive_int[][]
);
