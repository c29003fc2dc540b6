-- name: PutGrid :one
INSERT INTO grids (id, cells, names, flags, cube) VALUES ($1, $2, $3, $4, $5) RETURNING *;

-- name: GridsByIds :many
-- A list binds an array parameter: = ANY(sqlc.arg(ids)::int[]) is the IN (…) of PostgreSQL.
SELECT id, names FROM grids WHERE id = ANY(sqlc.arg(ids)::int[]) ORDER BY id;

-- name: FirstCells :many
SELECT id, (cells[1:1])::integer[][] AS first_row, array_length(cells, 1)::int AS n_rows FROM grids ORDER BY id;
