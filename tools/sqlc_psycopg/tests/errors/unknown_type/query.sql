-- name: GetSpan :one
SELECT r FROM spans WHERE id = $1;
