"""The corpus: each case generates, imports, passes mypy --strict and matches raw psycopg."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import psycopg
import pytest
from keen_dev.databases import create_database, drop_database, scratch_name

from tests import corpus
from tests.conftest import Built
from tests.harness import AsyncHarness, Harness

CASES = corpus.load(corpus.CASES)


def test_corpus_has_at_least_30_cases() -> None:
    assert len(CASES) >= 30


def test_generated_code_and_checks_pass_mypy_strict(built: Built) -> None:
    assert built.mypy.returncode == 0, built.mypy.stdout + built.mypy.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_matches_raw_psycopg(case: corpus.Case, built: Built, admin_url: str) -> None:
    check = importlib.import_module(f"check_{case.name}")
    models = importlib.import_module(f"{case.package}.models")
    name = scratch_name("plugin")
    url = create_database(admin_url, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(case.schema.encode())
        with psycopg.connect(url) as conn, psycopg.connect(url) as raw:
            for c in (conn, raw):
                models.register_types(c)
                c.commit()
            h = Harness(conn, raw)
            check.check(h)
            assert h.checks > 0, "the case checks nothing"
        if hasattr(check, "check_async"):
            asyncio.run(_run_async(check, models, url))
    finally:
        drop_database(admin_url, name)


async def _run_async(check: Any, models: Any, url: str) -> None:
    async with (
        await psycopg.AsyncConnection.connect(url) as conn,
        await psycopg.AsyncConnection.connect(url) as raw,
    ):
        for c in (conn, raw):
            await models.register_types_async(c)
            await c.commit()
        h = AsyncHarness(conn, raw)
        await check.check_async(h)
        assert h.checks > 0, "the case checks nothing async"
