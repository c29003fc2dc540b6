-- name: PutToken :one
INSERT INTO tokens (id, owner, aliases) VALUES ($1, $2, $3) RETURNING *;

-- name: TokensOf :many
SELECT id FROM tokens WHERE owner = ANY(sqlc.arg(owners)::uuid[]) ORDER BY id;
