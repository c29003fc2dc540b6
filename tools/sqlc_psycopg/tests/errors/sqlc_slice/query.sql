-- name: ByIds :many
SELECT id FROM t WHERE id IN (sqlc.slice(ids));
