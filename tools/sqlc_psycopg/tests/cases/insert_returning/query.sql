-- name: CreateTasks :many
-- Inserts many tasks in one statement and returns them: :many over INSERT … RETURNING.
INSERT INTO tasks (id, title)
SELECT u.id, u.title FROM unnest(sqlc.arg(ids)::int[], sqlc.arg(titles)::text[]) AS u (id, title)
RETURNING *;

-- name: FinishTasks :many
UPDATE tasks SET done = true WHERE id = ANY(sqlc.arg(ids)::int[]) RETURNING id, done;

-- name: DeleteTask :one
DELETE FROM tasks WHERE id = $1 RETURNING title;
