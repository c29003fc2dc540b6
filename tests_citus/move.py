"""A single-node deployment moving to Citus keeps every row (docs/scaling.md, "Moving").

    .venv/bin/python tests_citus/move.py fill URL       # tenants with money, sessions, tokens
    .venv/bin/python tests_citus/move.py snapshot URL   # prints the figures as JSON
    .venv/bin/python tests_citus/move.py compare BEFORE.json AFTER.json

scripts/test_citus.sh fills the database while its tables are still local (the single-node
state), snapshots it, distributes it and compares: same row count in every keen table, same
balances, ledger sums and figures. Exit status 1 when anything differs.
"""

from __future__ import annotations

import json
import sys
import uuid
from decimal import Decimal

import psycopg
from psycopg import sql

from keen_sql.config import Settings
from keen_sql.database import Database
from keen_sql.security import hash_password

TENANTS = 12


def fill(url: str) -> None:
    with Database(Settings(database_url=url, pool_min_size=1, pool_max_size=2)) as db:
        for _ in range(TENANTS):
            tag = f"mv{uuid.uuid4().hex[:10]}"
            with db.service() as q:
                user = q.users.register_user(
                    email=f"{tag}@example.com",
                    username=tag,
                    password_hash=hash_password("correct horse battery staple"),
                    timezone="Europe/Paris",
                )
            with db.tenant(user) as q:
                q.credits.add_credits(amount=Decimal("50"), idempotency_key=f"{tag}-buy")
                q.sessions.start_session(
                    session_id="root", vision="v", working_directory="/w", git_branch="main"
                )
                q.sessions.start_session(
                    session_id="child",
                    vision="v",
                    working_directory="/w",
                    git_branch="main",
                    parent_session_id="root",
                )
                q.sessions.update_session_progress(
                    session_id="child", tokens=100, cost=Decimal("1.25")
                )
                q.sessions.complete_session(session_id="child", success=True)
            db.deduct_credits(user, amount=Decimal("2.5"), idempotency_key=f"{tag}-use")


def snapshot(url: str) -> dict[str, str]:
    figures: dict[str, str] = {}
    with psycopg.connect(url) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_class AS c"
                " WHERE c.relnamespace = 'keen'::regnamespace AND c.relkind = 'r' ORDER BY 1"
            )
        ]
        for name in tables:
            count = sql.SQL("SELECT count(*) FROM keen.{}").format(sql.Identifier(name))
            row = conn.execute(count).fetchone()
            figures[f"rows {name}"] = str(row[0] if row else None)
        for label, query in [
            ("balances", "SELECT sum(current_balance) FROM keen.credit_accounts"),
            ("ledger sum", "SELECT sum(amount) FROM keen.credit_transactions"),
            ("ledger entries", "SELECT sum(entry_no) FROM keen.credit_transactions"),
            ("spent", "SELECT sum(lifetime_spent) FROM keen.credit_accounts"),
            ("session cost", "SELECT sum(total_cost) FROM keen.agent_sessions"),
            ("daily tokens", "SELECT sum(tokens_used) FROM keen.daily_usage_stats"),
        ]:
            row = conn.execute(query).fetchone()
            figures[label] = str(row[0] if row else None)
    return figures


def main(argv: list[str]) -> int:
    match argv:
        case ["fill", url]:
            fill(url)
            return 0
        case ["snapshot", url]:
            print(json.dumps(snapshot(url), sort_keys=True))
            return 0
        case ["compare", before_path, after_path]:
            with open(before_path) as f:
                before = json.load(f)
            with open(after_path) as f:
                after = json.load(f)
            differ = {
                k: (before.get(k), after.get(k))
                for k in before.keys() | after.keys()
                if before.get(k) != after.get(k)
            }
            for key, (was, now) in sorted(differ.items()):
                print(f"move: {key}: {was} before distribution, {now} after", file=sys.stderr)
            if not differ:
                print(
                    f"move: {len(before)} figures equal before and after distribution "
                    f"({before['rows credit_transactions']} ledger rows,"
                    f" balances {before['balances']})"
                )
            return 1 if differ else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
