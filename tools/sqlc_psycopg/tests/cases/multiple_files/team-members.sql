-- name: AddMember :exec
INSERT INTO members (team_id, name) VALUES ($1, $2);

-- name: MembersOf :many
SELECT name FROM members WHERE team_id = $1 ORDER BY name;
