-- name: BillingInvoice :one
SELECT * FROM billing.invoices WHERE id = $1;

-- name: CrmInvoice :one
SELECT * FROM crm.invoices WHERE id = $1;

-- name: Profile :one
SELECT * FROM "UserProfiles" WHERE "userId" = sqlc.arg('userId');

-- name: PaidInvoices :many
SELECT b.id, c."Customer Name" FROM billing.invoices b JOIN crm.invoices c USING (id)
WHERE b.state = sqlc.arg(state)::billing.state ORDER BY b.id;
