"""Entry point of the sqlc process plugin."""


def main() -> None:
    """Run the plugin (placeholder)."""
    raise SystemExit("sqlc_psycopg: not implemented yet")
