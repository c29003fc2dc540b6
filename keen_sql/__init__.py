"""keen-sql: the multi-tenant PostgreSQL layer of keen (pool, tenant transactions, errors, CLI)."""

from keen_sql.config import Settings
from keen_sql.database import AsyncDatabase, Database

__all__ = ["AsyncDatabase", "Database", "Settings"]
