-- name: PutItem :one
-- sqlc.narg parameters are optional keyword arguments (default None).
INSERT INTO items (id, name, note, price)
VALUES (sqlc.arg(id), sqlc.arg(name), sqlc.narg(note), coalesce(sqlc.narg(price)::numeric, 0))
RETURNING *;

-- name: GetItem :one
-- Always a row, or models.NoRowError.
SELECT * FROM items WHERE id = sqlc.arg(id);

-- name: FindItem :one
-- A lookup: None when there is none.
-- @lookup
SELECT * FROM items WHERE name = sqlc.arg(name);

-- name: ItemName :one
-- @lookup
SELECT name FROM items WHERE id = sqlc.arg(id);

-- name: List :many
-- Named like a builtin: the function is list_, and list[…] annotations still mean the builtin.
SELECT id, name FROM items ORDER BY id LIMIT sqlc.arg('limit');

-- name: ListIter :many
-- Its name is also what List's streaming form would be called: that one makes way.
SELECT id FROM items ORDER BY id;

-- name: Stats :one
-- A function's result columns: sqlc says nullable; the query declares what is not.
-- @not-null: *
-- @nullable: longest_note
SELECT s.n, s.total, s.longest_note FROM item_stats() AS s;

-- name: Credits :one
SELECT count(*)::int AS n FROM items;
