-- name: FindPeople :many
-- sqlc.arg is required; sqlc.narg may be None, and None means "any".
SELECT id, name, nickname, age FROM people
WHERE name LIKE sqlc.arg(name_prefix)::text || '%'
  AND (sqlc.narg(min_age)::int IS NULL OR age >= sqlc.narg(min_age)::int)
ORDER BY id;

-- name: SetNickname :one
UPDATE people SET nickname = sqlc.narg(nickname) WHERE id = sqlc.arg(id) RETURNING id, nickname;

-- name: AddPerson :exec
INSERT INTO people (id, name, nickname, age) VALUES (@id, @name, @nickname, @age);
