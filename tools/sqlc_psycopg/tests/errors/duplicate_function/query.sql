-- name: GetT :one
SELECT id FROM t WHERE id = $1;

-- name: get_t :one
SELECT id FROM t;
