CREATE TABLE authors (
  id   bigint PRIMARY KEY,
  name text NOT NULL,
  bio  text
);
COMMENT ON TABLE authors IS 'People who write books.';
COMMENT ON COLUMN authors.bio IS 'A short biography.';
