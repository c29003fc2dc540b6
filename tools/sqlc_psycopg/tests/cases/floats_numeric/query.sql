-- name: PutMeasure :one
INSERT INTO measures (id, r, d, f, n, money_, dec) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *;

-- name: Scaled :many
SELECT id, n * sqlc.arg(factor)::numeric AS scaled, d / sqlc.arg(divisor)::float8 AS ratio
FROM measures ORDER BY id;
