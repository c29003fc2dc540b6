-- name: PutRole :one
INSERT INTO app.roles (name, perms, extra) VALUES ($1, $2, $3) RETURNING *;

-- name: RolesWith :many
SELECT name, perms FROM app.roles WHERE sqlc.arg(perm)::app.perm = ANY(perms) ORDER BY name;

-- name: AllPerms :one
SELECT enum_range(NULL::app.perm)::app.perm[] AS perms;
