-- name: GetT :many
SELECT id FROM t;
