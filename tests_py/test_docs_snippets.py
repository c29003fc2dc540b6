"""The Python snippets of the docs and guides type-check with mypy --strict.

Each document's ```python blocks are joined in order (a guide's snippets build on each other)
behind one prelude that declares, typed, what a service brings itself: its `Database`, the
tenant's `user_id`, its own helpers (`charge_card`, `send`, …). Nothing else is stubbed: every
call into keen_sql and the generated queries is checked against the real signatures, so a
snippet that still passes `p_amount=`, or treats a row as `X | None`, fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from keen_dev.databases import CHECKOUT as ROOT

# docs/sqlc_plugin.md shows generated code (bodies elided with `...`), not usage: it is not a
# service's code and is left out; every other document with Python is checked.
DOCS = sorted(
    p
    for p in [*ROOT.glob("docs/*.md"), *ROOT.glob("docs/guides/*.md"), ROOT / "README.md"]
    if p.name != "sqlc_plugin.md" and "```python" in p.read_text()
)

PRELUDE = """\
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from keen_queries.models import CreditTransaction
from keen_sql.database import Database


class WebSocket(Protocol):  # the WebSocket server's connection object
    async def send_json(self, data: Any) -> None: ...


class CardDeclined(Exception): ...


class PaymentIntent(Protocol):
    id: str


db: Database
user_id: UUID
key: str
amount: Decimal
cursor: int
last_seen: int | None
client: object
subscribed_patterns: list[str]
presented_token: str
presented_refresh: str
OPERATOR_URL: str
direct_url: str
charge_card: Callable[[UUID, Decimal], PaymentIntent]
matches: Callable[[str, list[str]], bool]
await_send: Callable[[object, dict[str, Any]], None]
send: Callable[[object], None]
code_from_user: str  # a code the user typed (TOTP or recovery)
seal: Callable[[str], str]  # the service's own encryption, with a key outside the database
unseal: Callable[[str], str]
new_totp_secret: Callable[[], str]
totp_ok: Callable[[str, str], bool]


def send_mail(body: str, to: str | None = None) -> None: ...
"""


def snippets(doc: Path) -> str:
    """The document's Python blocks, dedented (some sit in list items), joined in order."""
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    return "\n".join(textwrap.dedent(block) for block in blocks)


def test_the_docs_have_snippets_to_check() -> None:
    names = {d.name for d in DOCS}
    assert {"python_api.md", "agent_core.md", "api_gateway.md", "websocket_server.md"} <= names


def test_every_docs_snippet_passes_mypy_strict(tmp_path: Path) -> None:
    files = []
    for doc in DOCS:
        module = tmp_path / f"snippets_{doc.stem}.py"
        module.write_text(PRELUDE + "\n# ---- " + doc.name + "\n" + snippets(doc))
        files.append(str(module))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MYPYPATH": str(ROOT / "generated")},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_no_snippet_uses_the_old_api(doc: Path) -> None:
    code = snippets(doc)
    assert not re.findall(r"\bp_[a-z_]+=", code), "SQL parameter names: call with amount=, …"
    assert not re.findall(r"assert \w+ is not None", code), "rows are not Optional"
