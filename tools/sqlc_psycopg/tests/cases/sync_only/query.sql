-- name: AddNote :one
INSERT INTO notes (id, body) VALUES ($1, $2) RETURNING id;

-- name: Notes :many
SELECT body FROM notes ORDER BY id;
