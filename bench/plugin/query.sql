-- name: GetAccount :one
SELECT id, owner, email, balance, active, created_at, note FROM bench_accounts WHERE id = $1;

-- name: ListAccounts :many
SELECT id, owner, email, balance, active, created_at, note FROM bench_accounts
WHERE id >= sqlc.arg(first)::bigint ORDER BY id LIMIT sqlc.arg(n)::int;

-- name: ListIds :many
SELECT id FROM bench_accounts WHERE id >= sqlc.arg(first)::bigint ORDER BY id LIMIT sqlc.arg(n)::int;
