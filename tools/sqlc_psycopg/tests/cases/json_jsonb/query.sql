-- name: PutDoc :one
INSERT INTO docs (id, body, raw, tags) VALUES ($1, $2, $3, $4) RETURNING *;

-- name: FindByKey :many
SELECT id, body -> sqlc.arg(key)::text AS value FROM docs WHERE body ? sqlc.arg(key)::text ORDER BY id;

-- name: MergeBody :one
UPDATE docs SET body = body || sqlc.arg(patch)::jsonb WHERE id = sqlc.arg(id) RETURNING body;
