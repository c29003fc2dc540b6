-- name: RegionTotals :many
SELECT * FROM region_totals ORDER BY region;

-- name: RegionTotal :one
SELECT total FROM region_totals WHERE region = $1;
