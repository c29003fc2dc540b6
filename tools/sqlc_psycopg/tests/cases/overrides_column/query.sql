-- name: PutOrder :one
INSERT INTO shop.orders (id, note, total, meta) VALUES ($1, $2, $3, $4) RETURNING *;

-- name: OrderTotals :one
-- max() of no rows is NULL, but sqlc says not null: a query override fixes the row type.
SELECT count(*) AS n, max(total) AS biggest FROM shop.orders WHERE note = sqlc.arg(note);
