-- name: PutBooking :one
INSERT INTO bookings (id, seats, big, price, stay, during, naive, gaps)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *;

-- name: Overlapping :many
SELECT id, seats FROM bookings WHERE seats && sqlc.arg(seats)::int4range ORDER BY id;
