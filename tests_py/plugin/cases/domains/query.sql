-- name: PutAccount :one
INSERT INTO accounts (id, contact, balance, prio, backups) VALUES ($1, $2, $3, $4, $5) RETURNING *;

-- name: RichAccounts :many
SELECT id, balance FROM accounts WHERE balance > sqlc.arg(min)::money4 ORDER BY id;
