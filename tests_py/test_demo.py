"""`keen-sql demo` migrates an empty database and summarises the schema."""

from __future__ import annotations

import pytest

from keen_sql import cli


def test_demo_migrates_then_lists_migrations_tables_and_functions(
    empty_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--database-url", empty_db_url, "demo"]) == 0
    out = capsys.readouterr().out

    assert "applied just now" in out
    assert "applied  0001_foundation" in out
    assert "PENDING" not in out
    for table in ("users", "credit_transactions", "agent_sessions", "daily_usage_stats"):
        assert f"  {table} " in out
    assert "enabled and forced" in out
    assert "keen.current_user_id()" in out
