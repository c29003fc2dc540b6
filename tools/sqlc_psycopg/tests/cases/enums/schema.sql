CREATE TYPE status AS ENUM ('draft', 'in review', 'published', '2nd-pass', 'Draft');
COMMENT ON TYPE status IS 'Where an article stands.';
CREATE TABLE articles (
  id     integer PRIMARY KEY,
  status status NOT NULL DEFAULT 'draft',
  prev   status
);
