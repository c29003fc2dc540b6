-- name: CopyItems :copyfrom
INSERT INTO items (id, label, note, colors, attrs, payload, price) VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: ListItems :many
SELECT * FROM items ORDER BY id;
