import ipaddress as ip
from typing import assert_type

from case_network import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    cases = [
        (1, ip.ip_address("10.1.2.3"), ip.ip_network("10.0.0.0/8"), [ip.ip_address("::1")]),
        (2, ip.ip_interface("10.9.9.9/24"), None, None),
        (3, ip.ip_address("2001:db8::1"), ip.ip_network("2001:db8::/32"), []),
    ]
    for c in cases:
        row = h.check(
            lambda: query.put_host(h.conn, id=c[0], addr=c[1], net=c[2], extras=c[3]),
            query.PUT_HOST,
            c,
            fetch="one",
            mutates=True,
        )
        assert_type(row, models.Host)
        assert row is not None and row.addr == c[1]
    rows = h.check(
        lambda: query.hosts_in(h.conn, net=ip.ip_network("10.0.0.0/8")),
        query.HOSTS_IN,
        (ip.ip_network("10.0.0.0/8"),),
    )
    assert [type(r.addr) for r in rows] == [ip.IPv4Address, ip.IPv4Interface]


async def check_async(h: AsyncHarness) -> None:
    rows = await h.check(
        lambda: query.hosts_in_async(h.conn, net=ip.ip_network("2001:db8::/32")),
        query.HOSTS_IN,
        (ip.ip_network("2001:db8::/32"),),
    )
    assert rows[0].addr == ip.ip_address("2001:db8::1")
