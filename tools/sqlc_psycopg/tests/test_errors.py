"""Errors in the input stop sqlc with a message naming the query and the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import corpus

ERROR_CASES = corpus.load(corpus.ERRORS)


@dataclass(frozen=True)
class Failed:
    """One sqlc run over every error case: exit status, messages by case, output dir."""

    returncode: int
    messages: dict[str, str]
    workdir: Path


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory, admin_url: str) -> Failed:
    """Run sqlc once on all error cases, each under a plugin of its own name."""
    workdir = tmp_path_factory.mktemp("plugin-errors")
    result = corpus.run_sqlc(ERROR_CASES, workdir, admin_url, plugin_per_case=True)
    return Failed(result.returncode, corpus.reports(result.stderr), workdir)


def test_there_are_error_cases() -> None:
    assert len(ERROR_CASES) >= 10


def test_a_failed_run_writes_no_file(failed: Failed) -> None:
    assert failed.returncode != 0
    assert not (failed.workdir / "gen").exists()


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.name for c in ERROR_CASES])
def test_error_case_fails_with_its_message(case: corpus.Case, failed: Failed) -> None:
    assert case.name in failed.messages, "sqlc accepted an input the plugin must reject"
    message = failed.messages[case.name]
    for line in (case.path / "expected.txt").read_text().splitlines():
        assert line in message, f"{line!r} not in:\n{message}"
