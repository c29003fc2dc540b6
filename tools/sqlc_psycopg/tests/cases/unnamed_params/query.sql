-- name: Between :many
SELECT a, b FROM pairs WHERE a >= $1 AND a <= $2 AND b <> $1 ORDER BY a, b;

-- name: SameName :many
SELECT x.a, y.a FROM pairs x JOIN pairs y ON y.b = x.a WHERE x.a = $1 OR y.a = $2 ORDER BY 1, 2;

-- name: Literal :one
SELECT $1::int + 1 AS next, $2::text AS label;

-- name: AddPair :exec
INSERT INTO pairs (a, b) VALUES ($1, $2);
