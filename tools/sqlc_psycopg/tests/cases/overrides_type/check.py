from decimal import Decimal
from typing import Any, assert_type

from psycopg.types.json import Jsonb

from case_overrides_type import models, query

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    config: dict[str, Any] = {"theme": "dark", "n": 3}
    row = h.check(
        lambda: query.put_setting(
            h.conn, id=1, config=config, history=[{"v": 1}], code="abc", weight=Decimal(2)
        ),
        query.PUT_SETTING,
        (1, Jsonb(config), [Jsonb({"v": 1})], "abc", Decimal(2)),
        fetch="one",
        mutates=True,
    )
    assert_type(row, models.Setting)
    assert_type(row.config, dict[str, Any])
    assert_type(row.history, list[dict[str, Any]] | None)
    assert_type(row.code, str | None)
    configs = h.check(lambda: query.configs(h.conn), query.CONFIGS, value=dict)
    assert configs[0]["theme"] == "dark"


async def check_async(h: AsyncHarness) -> None:
    configs = await h.check(lambda: query.configs_async(h.conn), query.CONFIGS, value=dict)
    assert_type(configs[0], dict[str, Any])
