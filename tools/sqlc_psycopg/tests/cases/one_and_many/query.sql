-- name: GetAuthor :one
-- One author by id; None when there is none.
-- @lookup
SELECT * FROM authors WHERE id = $1;

-- name: ListAuthors :many
-- Authors whose name starts with a prefix, by id.
SELECT id, name FROM authors WHERE name LIKE sqlc.arg(prefix)::text || '%' ORDER BY id;

-- name: CountAuthors :one
SELECT count(*) AS n FROM authors;
