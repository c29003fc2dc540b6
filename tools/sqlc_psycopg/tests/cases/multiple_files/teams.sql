-- name: AddTeam :exec
INSERT INTO teams (id, name) VALUES ($1, $2);

-- name: Teams :many
SELECT * FROM teams ORDER BY id;
