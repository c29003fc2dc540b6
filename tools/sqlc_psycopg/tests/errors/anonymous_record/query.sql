-- name: Pairs :many
SELECT * FROM pairs();
