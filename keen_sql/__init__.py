"""keen-sql: the multi-tenant PostgreSQL layer of keen (pool, tenant transactions, errors, CLI)."""
