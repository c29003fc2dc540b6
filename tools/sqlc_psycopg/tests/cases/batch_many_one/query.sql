-- name: ScoresOf :batchmany
SELECT round, points FROM scores WHERE player = $1 ORDER BY round;

-- name: BestOf :batchone
-- A lookup per item: None for a player without scores.
-- @lookup
SELECT player, max(points)::int AS best FROM scores WHERE player = $1 GROUP BY player;

-- name: AddScore :batchone
INSERT INTO scores (player, round, points) VALUES ($1, $2, $3) RETURNING player, round, points;
