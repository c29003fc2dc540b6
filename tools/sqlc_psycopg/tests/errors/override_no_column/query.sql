-- name: GetT :one
SELECT id FROM t WHERE id = $1;
