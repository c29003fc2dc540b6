-- Roll back 0004_credits: accounts, ledger, holds, recharge requests and their functions.
SET ROLE keen_owner;
DROP TABLE keen.recharge_requests;
DROP TABLE keen.credit_holds;
DROP TABLE keen.credit_transactions;
DROP TABLE keen.credit_accounts;
RESET ROLE;
