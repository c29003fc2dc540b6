-- name: GetSpan :one
-- A column of a type the plugin does not know: typing.Any, with a comment naming it.
SELECT id, r FROM spans WHERE id = $1;

-- name: PutSpan :exec
INSERT INTO spans (id, name, r) VALUES ($1, $2, $3);

-- name: Upper :one
-- sqlc's static analysis cannot type upper(): typing.Any too, never a refusal.
SELECT upper(name) AS u, id FROM spans WHERE id = $1;

