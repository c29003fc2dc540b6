CREATE TABLE tasks (
  id    integer PRIMARY KEY,
  title text NOT NULL,
  done  boolean NOT NULL DEFAULT false
);
