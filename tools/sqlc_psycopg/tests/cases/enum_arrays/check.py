from typing import assert_type

from case_enum_arrays import models, query

from tests.harness import AsyncHarness, Harness

Perm = models.Perm


def check(h: Harness) -> None:
    for name, perms, extra in [
        ("viewer", [Perm.READ], None),
        ("editor", [Perm.READ, Perm.WRITE], [[Perm.READ], [Perm.ADMIN]]),
        ("nobody", [], []),
    ]:
        row = h.check(
            lambda: query.put_role(h.conn, name=name, perms=perms, extra=extra),
            query.PUT_ROLE,
            (name, perms, extra),
            fetch="one",
            mutates=True,
        )
        assert_type(row, models.Role)
        assert row is not None and row.perms == perms
        assert all(type(p) is Perm for p in row.perms)
    rows = h.check(lambda: query.roles_with(h.conn, perm=Perm.READ), query.ROLES_WITH, (Perm.READ,))
    assert_type(rows[0].perms, list[Perm])
    assert [r.name for r in rows] == ["editor", "viewer"]
    every = h.check(lambda: query.all_perms(h.conn), query.ALL_PERMS, fetch="one", value=list)
    assert_type(every, list[Perm])
    assert every == list(Perm)


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(
        lambda: query.roles_with_async(h.conn, perm=Perm.WRITE), query.ROLES_WITH, (Perm.WRITE,)
    )
    assert rows[0].perms[1] is Perm.WRITE
