-- name: PutHost :one
INSERT INTO hosts (id, addr, net, extras) VALUES ($1, $2, $3, $4) RETURNING *;

-- name: HostsIn :many
SELECT id, addr FROM hosts WHERE addr << sqlc.arg(net)::cidr ORDER BY id;
