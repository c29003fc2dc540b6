-- name: GetOdd :one
SELECT * FROM "Odd Table" WHERE "class" = sqlc.arg('class');

-- name: InsertOdd :exec
INSERT INTO "Odd Table" ("class", "from", "import", "def", "count", "index", "_private", "Mixed Case", "1st", "match", "None")
VALUES (sqlc.arg('class'), sqlc.arg('from'), sqlc.arg('import'), sqlc.arg('def'), sqlc.arg('count'), sqlc.arg('index'),
        sqlc.arg('_private'), sqlc.arg('Mixed Case'), sqlc.arg('1st'), sqlc.arg('match'), sqlc.arg('None'));

-- name: Lambda :many
SELECT "class" AS lambda, "count" AS rows, "from" AS conn FROM "Odd Table" WHERE "count" >= sqlc.arg('rows');
