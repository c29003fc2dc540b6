CREATE SCHEMA app;
CREATE TYPE app.perm AS ENUM ('read', 'write', 'admin');
CREATE TABLE app.roles (
  name  text PRIMARY KEY,
  perms app.perm[] NOT NULL,
  extra app.perm[][]
);
