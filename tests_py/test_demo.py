"""The demonstration of `make run` (examples/demo): migrates, summarises, runs every capability."""

from __future__ import annotations

import pytest

from examples.demo.__main__ import main


def test_demo_migrates_then_lists_migrations_tables_and_functions(
    empty_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--database-url", empty_db_url]) == 0
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
