CREATE DOMAIN short_code AS text CHECK (length(VALUE) <= 8);
CREATE TABLE settings (
  id      integer PRIMARY KEY,
  config  jsonb NOT NULL,
  history jsonb[],
  code    short_code,
  weight  numeric NOT NULL
);
