-- name: PutText :one
INSERT INTO texts (id, t, v, c, vv, n, x, q) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *;

-- name: Concat :one
SELECT (t || coalesce(v, '') || sqlc.arg(suffix)::text)::text AS joined, upper(t) AS upper, length(t) AS len
FROM texts WHERE id = sqlc.arg(id);
