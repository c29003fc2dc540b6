-- name: Upper :one
SELECT upper(name) AS u FROM t WHERE id = $1;
