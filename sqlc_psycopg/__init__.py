"""sqlc process plugin that emits psycopg 3 code (placeholder until the plugin lands)."""
