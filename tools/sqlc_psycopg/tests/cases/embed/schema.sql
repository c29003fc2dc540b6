CREATE TABLE authors (
  id   integer PRIMARY KEY,
  name text NOT NULL
);
CREATE TABLE books (
  id        integer PRIMARY KEY,
  author_id integer NOT NULL REFERENCES authors (id) ON DELETE CASCADE,
  title     text NOT NULL,
  year      integer
);
