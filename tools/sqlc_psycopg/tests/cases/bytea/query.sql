-- name: PutBlob :one
INSERT INTO blobs (id, data, maybe, parts) VALUES ($1, $2, $3, $4) RETURNING *;

-- name: BlobDigest :one
SELECT sha256(data) AS digest, length(data)::int AS size FROM blobs WHERE id = $1;
