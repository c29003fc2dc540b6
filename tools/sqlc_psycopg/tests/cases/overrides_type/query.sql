-- name: PutSetting :one
INSERT INTO settings (id, config, history, code, weight) VALUES ($1, $2, $3, $4, $5) RETURNING *;

-- name: Configs :many
SELECT config FROM settings ORDER BY id;
