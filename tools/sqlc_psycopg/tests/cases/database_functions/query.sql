-- name: BalanceOf :one
SELECT balance_of(p_account => sqlc.arg(p_account)::text) AS balance;

-- name: StatementOf :many
SELECT (statement_of(sqlc.arg(p_account)::text)).*;

-- name: Post :one
-- Posts an entry through the SQL function.
SELECT * FROM post(sqlc.arg(p_id)::int, sqlc.arg(p_account)::text, sqlc.arg(p_amount)::numeric);
