CREATE TABLE bookings (
  id      integer PRIMARY KEY,
  seats   int4range NOT NULL,
  big     int8range,
  price   numrange,
  stay    daterange,
  during  tstzrange,
  naive   tsrange,
  gaps    int4multirange
);
