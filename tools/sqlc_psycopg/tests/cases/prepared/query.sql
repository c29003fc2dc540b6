-- name: GetValue :one
SELECT v FROM kv WHERE k = $1;

-- name: PutValue :exec
INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v;
