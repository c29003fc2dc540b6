-- name: CreateCounter :exec
INSERT INTO counters (name) VALUES (sqlc.arg(name)::text);

-- name: BumpAll :execrows
-- Adds one to every counter whose name starts with a prefix.
UPDATE counters SET value = value + 1 WHERE name LIKE sqlc.arg(prefix)::text || '%';

-- name: DeleteCounter :execresult
DELETE FROM counters WHERE name = sqlc.arg(name)::text;

-- name: ResetAll :exec
UPDATE counters SET value = 0;
