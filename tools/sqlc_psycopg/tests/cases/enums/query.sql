-- name: PutArticle :one
INSERT INTO articles (id, status, prev) VALUES ($1, $2, $3) RETURNING *;

-- name: ByStatus :many
SELECT id, status FROM articles WHERE status = sqlc.arg(status) ORDER BY id;

-- name: Promote :one
UPDATE articles SET prev = status, status = sqlc.arg(next)::status WHERE id = sqlc.arg(id) RETURNING prev, status;
