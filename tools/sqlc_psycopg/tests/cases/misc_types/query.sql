-- name: PutMisc :one
INSERT INTO misc (id, ok, bits, vbits, cash, doc, spot, mac, loc)
VALUES ($1, $2, $3::bit(4), $4::varbit, $5::money, to_tsvector('simple', $6::text), $7::point, $8::macaddr, $9::pg_lsn)
RETURNING *;

-- name: Truthy :many
SELECT id, NOT ok AS negated FROM misc WHERE ok = sqlc.arg(ok) ORDER BY id;
