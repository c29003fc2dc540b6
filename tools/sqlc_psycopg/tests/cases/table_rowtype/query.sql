-- name: Audit :many
-- Whole rows of users stored as values: the table's row type comes back as its model.
SELECT id, before, after FROM audit ORDER BY id;

-- name: AddAudit :exec
INSERT INTO audit (id, before, after) VALUES ($1, $2, $3);
