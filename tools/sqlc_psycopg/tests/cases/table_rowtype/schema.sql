CREATE TABLE users (
  id    integer PRIMARY KEY,
  email text NOT NULL
);
CREATE TABLE audit (
  id     integer PRIMARY KEY,
  before users,
  after  users NOT NULL
);
