-- name: PutThing :one
-- The whole row back, as psycopg's own tuple.
INSERT INTO things (id, "class", owner, price, ratio, flag, blob, doc, tags, grid, moods, mood, at, seen, day, span, addr)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
RETURNING *;

-- name: GetThing :one
SELECT * FROM things WHERE id = $1;

-- name: ListThings :many
SELECT id, "class", price, moods, at, addr FROM things WHERE id >= sqlc.arg(first) ORDER BY id;

-- name: CountThings :one
SELECT count(*) AS n FROM things;
