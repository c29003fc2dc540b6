"""Fixtures of the plugin corpus: every case generated once per run and type-checked once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import corpus


@dataclass(frozen=True)
class Built:
    """The generated corpus: where it is and what sqlc and mypy said."""

    gen: Path
    sqlc: subprocess.CompletedProcess[str]
    mypy: subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def built(admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """Generate every case with one sqlc run, then mypy --strict them all in one run."""
    cases = corpus.load(corpus.CASES)
    workdir = tmp_path_factory.mktemp("plugin-corpus")
    result = corpus.run_sqlc(cases, workdir, admin_url)
    assert result.returncode == 0, f"sqlc failed:\n{result.stdout}\n{result.stderr}"
    gen = workdir / "gen"
    checks = corpus.copy_checks(cases, gen)
    mypy = corpus.run_mypy(gen, cases)
    sys.path[:0] = [str(gen), str(checks)]
    try:
        yield Built(gen, result, mypy)
    finally:
        sys.path.remove(str(gen))
        sys.path.remove(str(checks))
