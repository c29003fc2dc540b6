CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE TABLE spans (id integer PRIMARY KEY, r floatrange);
