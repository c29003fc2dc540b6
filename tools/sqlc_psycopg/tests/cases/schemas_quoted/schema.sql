CREATE SCHEMA billing;
CREATE SCHEMA crm;
CREATE TYPE billing.state AS ENUM ('open', 'paid');
CREATE TABLE billing.invoices (
  id    integer PRIMARY KEY,
  state billing.state NOT NULL
);
CREATE TABLE crm.invoices (
  id     integer PRIMARY KEY,
  "Customer Name" text NOT NULL
);
CREATE TABLE public."UserProfiles" (
  "userId" integer PRIMARY KEY,
  "displayName" text
);
