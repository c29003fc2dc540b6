"""`keen-sql demo` migrates an empty database, summarises the schema and runs the demonstration."""

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
    # The demonstration itself: every check it makes held, and each refusal was a refusal.
    assert out.rstrip().endswith("all checks held")
    assert "FAIL" not in out
    assert "ALLOWED" not in out
    assert "refused: NotFound (KE006)" in out
