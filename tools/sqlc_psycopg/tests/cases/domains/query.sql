-- name: PutAccount :one
INSERT INTO accounts (id, contact, balance, prio, backups, levels, steps)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *;

-- name: RichAccounts :many
SELECT id, balance FROM accounts WHERE balance > sqlc.arg(min)::money4 ORDER BY id;
