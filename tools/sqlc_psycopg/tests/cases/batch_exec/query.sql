-- name: InsertEvent :batchexec
INSERT INTO events (id, kind, data) VALUES ($1, $2, $3);

-- name: DeleteEvent :batchexec
DELETE FROM events WHERE id = sqlc.arg(id)::int;

-- name: ListEvents :many
SELECT id, kind, data FROM events ORDER BY id;
