-- name: PutTrip :one
INSERT INTO trips (id, start, stops, corner) VALUES ($1, $2, $3, $4) RETURNING *;

-- name: StartPoints :many
SELECT id, (start).at AS at, (start).name AS name FROM trips ORDER BY id;
