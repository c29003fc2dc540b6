CREATE TABLE scores (
  player text NOT NULL,
  round  integer NOT NULL,
  points integer NOT NULL,
  PRIMARY KEY (player, round)
);
