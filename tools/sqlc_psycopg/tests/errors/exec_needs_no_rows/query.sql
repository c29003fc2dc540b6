-- name: Touch :one
UPDATE t SET id = id WHERE id = $1;
