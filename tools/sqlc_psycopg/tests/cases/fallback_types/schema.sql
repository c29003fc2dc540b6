CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE TABLE spans (id integer PRIMARY KEY, name text NOT NULL, r floatrange);
