CREATE TABLE "Odd Table" (
  "class"      integer PRIMARY KEY,
  "from"       text NOT NULL,
  "import"     text,
  "def"        boolean NOT NULL DEFAULT false,
  "count"      integer NOT NULL DEFAULT 0,
  "index"      integer,
  "_private"   text,
  "Mixed Case" text,
  "1st"        text,
  "match"      text,
  "None"       text
);
