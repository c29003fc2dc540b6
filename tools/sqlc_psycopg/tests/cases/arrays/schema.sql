CREATE TABLE grids (
  id      integer PRIMARY KEY,
  cells   integer[][] NOT NULL,
  names   text[],
  flags   boolean[] NOT NULL DEFAULT '{}',
  cube    numeric[][][]
);
