CREATE TABLE teams (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE members (team_id integer NOT NULL REFERENCES teams (id) ON DELETE CASCADE, name text NOT NULL);
