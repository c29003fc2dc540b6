-- name: PutSlot :one
INSERT INTO slots (id, at, local_at, day, clock, clock_tz, span) VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;

-- name: SlotsBetween :many
SELECT id, at + span AS ends, day FROM slots
WHERE at >= sqlc.arg(since)::timestamptz AND day <= sqlc.arg(until)::date ORDER BY id;
