-- name: InsertNums :one
INSERT INTO nums (id, big, s, i, b, o, n) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *;

-- name: Sums :one
SELECT sum(s)::bigint AS s, sum(i)::bigint AS i, (sum(b) + 1)::numeric AS b, count(*) AS c FROM nums;

-- name: AddInts :one
SELECT sqlc.arg(a)::smallint + sqlc.arg(b)::bigint AS total;
