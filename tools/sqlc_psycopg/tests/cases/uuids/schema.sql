CREATE TABLE tokens (
  id      uuid PRIMARY KEY,
  owner   uuid,
  aliases uuid[] NOT NULL DEFAULT '{}'
);
