"""Errors in the input stop sqlc with a message naming the query and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests_py.plugin import corpus

ERROR_CASES = corpus.load(corpus.ERRORS)


def test_there_are_error_cases() -> None:
    assert len(ERROR_CASES) >= 10


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.name for c in ERROR_CASES])
def test_error_case_fails_with_its_message(
    case: corpus.Case, tmp_path: Path, admin_url: str
) -> None:
    result = corpus.run_sqlc([case], tmp_path, admin_url)
    assert result.returncode != 0, "sqlc succeeded on an input the plugin must reject"
    message = result.stderr
    for line in (case.path / "expected.txt").read_text().splitlines():
        assert line in message, f"{line!r} not in:\n{message}"
    assert not (tmp_path / "gen").exists(), "a failed run must not write files"
