CREATE TABLE blobs (
  id    integer PRIMARY KEY,
  data  bytea NOT NULL,
  maybe bytea,
  parts bytea[]
);
