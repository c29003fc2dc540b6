"""Migrations build exactly schema/, roll back to nothing, apply again, and are named right."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import pytest
from keen_dev.clusters import cluster_dir
from keen_dev.databases import CHECKOUT, create_database, drop_database, scratch_name

from keen_sql import migrations
from tests_py.support.schema import (
    OUR_ROLES,
    apply_schema,
    catalog_snapshot,
    leftovers,
    snapshot_diff,
)

MIGRATION_NAME = re.compile(
    r"^(?P<number>\d{4})_(?P<slug>[a-z0-9]+(?:_[a-z0-9]+)*)(?P<rollback>\.rollback)?\.sql$"
)


@pytest.fixture
def scratch_dbs(admin_url: str) -> Iterator[list[str]]:
    """Three empty databases of this test's own (migrations, schema/, untouched baseline)."""
    names = [scratch_name(kind) for kind in ("mig", "schema", "empty")]
    urls = [create_database(admin_url, name) for name in names]
    try:
        yield urls
    finally:
        for name in names:
            drop_database(admin_url, name)


def test_migrations_build_the_same_catalog_as_schema_files(scratch_dbs: list[str]) -> None:
    migrated_url, schema_url, _ = scratch_dbs
    migrations.apply(migrated_url)
    apply_schema(schema_url)

    from_schema = catalog_snapshot(schema_url)
    from_migrations = catalog_snapshot(migrated_url)

    assert any(line.startswith("relation | keen.users |") for line in from_schema)
    diff = snapshot_diff(from_schema, from_migrations, ("schema/", "migrations/"))
    assert not diff, "migrations/ and schema/ build different databases:\n" + diff


def test_rollback_all_leaves_nothing_and_apply_again_rebuilds(scratch_dbs: list[str]) -> None:
    migrated_url, _, empty_url = scratch_dbs
    applied = migrations.apply(migrated_url)
    first = catalog_snapshot(migrated_url)

    undone = migrations.rollback(migrated_url)
    assert undone == list(reversed(applied))
    left = leftovers(migrated_url, empty_url)
    assert not left, "rolling every migration back left:\n" + "\n".join(left)

    assert migrations.apply(migrated_url) == applied
    again = catalog_snapshot(migrated_url)
    diff = snapshot_diff(first, again, ("first apply", "second apply"))
    assert not diff, "applying after a full rollback builds something else:\n" + diff


def _our_roles(admin_url: str) -> list[str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
            [list(OUR_ROLES)],
        ).fetchall()
    return [str(row[0]) for row in rows]


def test_rollback_drops_the_roles_only_when_no_other_database_uses_them() -> None:
    # Roles are cluster-wide: this needs a cluster of its own, where nothing else uses them.
    with cluster_dir("rollback") as clusters:
        cluster = clusters.init("main")
        cluster.start()
        admin = cluster.url()
        first, second, empty = (
            create_database(admin, name) for name in ("keen_a", "keen_b", "keen_empty")
        )
        migrations.apply(first)
        migrations.apply(second)

        migrations.rollback(first)
        assert _our_roles(admin) == sorted(OUR_ROLES), "keen_b still uses the roles"
        assert not leftovers(first, empty)

        migrations.rollback(second)
        assert _our_roles(admin) == [], "the last rollback drops the roles"
        assert not leftovers(second, empty)

        assert migrations.apply(first), "migrating again recreates the roles"
        assert _our_roles(admin) == sorted(OUR_ROLES)


def test_migration_files_are_numbered_twins_with_a_leading_comment() -> None:
    files = sorted(
        (p for p in migrations.migration_files().iterdir() if not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    assert files, "migrations/ is empty"

    forward: dict[int, str] = {}
    rollback: dict[int, str] = {}
    for path in files:
        match = MIGRATION_NAME.match(path.name)
        assert match, f"{path.name}: not NNNN_snake_case.sql or NNNN_snake_case.rollback.sql"
        stem = f"{match['number']}_{match['slug']}"
        target = rollback if match["rollback"] else forward
        assert int(match["number"]) not in target, f"{path.name}: number used twice"
        target[int(match["number"])] = stem
        lines = path.read_text(encoding="utf-8").splitlines()
        first_line = lines[0] if lines else ""
        assert re.match(r"^-- \S", first_line), f"{path.name}: must open with a describing comment"

    assert forward == rollback, "every migration needs its rollback twin (same number and name)"
    assert sorted(forward) == list(range(1, len(forward) + 1)), "numbers must run 0001, 0002, …"


def test_packaged_migrations_are_the_files_of_migrations_dir() -> None:
    # keen_sql reads its migrations as package data (importlib.resources); in the checkout
    # keen_sql/sql/migrations links to migrations/, and the wheel carries the same files.
    packaged = {p.name: p.read_bytes() for p in migrations.migration_files().iterdir()}
    on_disk = {p.name: p.read_bytes() for p in (CHECKOUT / "migrations").glob("*.sql")}
    assert packaged == on_disk
    assert [m.id for m in migrations.read()] == sorted(
        name.removesuffix(".sql") for name in on_disk if not name.endswith(".rollback.sql")
    )
