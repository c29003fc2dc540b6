"""Which shards each public call touches on a Citus cluster (issue 19).

    .venv/bin/python bench/citus/routing.py COORDINATOR_URL [--markdown]

COORDINATOR_URL names a database that `make test-citus` (scripts/test_citus.sh) migrated and
distributed. The script makes two tenants, then calls every generated query of the API once
(`q.<area>.<name>(…)` through `keen_sql.Database`, as a service does) inside its usual
transaction with `citus.log_remote_commands = on`, collects the commands the coordinator sends
to the workers (as notices) and maps each shard they name to its shard group (co-location
group and hash range). A call is single-shard when everything it touched of the tenant tables
lies in one shard group; the lookup table (distributed by value) and reference tables are
counted on their own. Prints one line per call and the totals.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from ipaddress import ip_address
from typing import Any

import psycopg

from keen_sql.bindings import Queries
from keen_sql.config import Settings
from keen_sql.database import Database
from keen_sql.security import hash_password

SHARD = re.compile(r"\bkeen\.([a-z_]+?)_(\d{6,})\b")


@dataclass
class Call:
    name: str
    who: str
    groups: set[tuple[int, str]] = field(default_factory=set)
    other: set[str] = field(default_factory=set)
    error: str | None = None

    @property
    def verdict(self) -> str:
        if self.error:
            return "error"
        if not self.groups:
            return "coordinator only" if not self.other else "lookup/reference only"
        return "single shard group" if len(self.groups) == 1 else f"{len(self.groups)} shard groups"


class Routing:
    def __init__(self, url: str) -> None:
        self.url = url
        with psycopg.connect(url, autocommit=True) as conn:
            self.shards = {
                sid: (rel, method, coloc, minv)
                for sid, rel, method, coloc, minv in conn.execute(
                    "SELECT s.shardid, s.logicalrelid::text, p.partmethod::text, p.colocationid,"
                    "       coalesce(s.shardminvalue, '')"
                    "  FROM pg_dist_shard AS s JOIN pg_dist_partition AS p USING (logicalrelid)"
                )
            }
            self.tenant_group = conn.execute(
                "SELECT colocationid FROM pg_dist_partition"
                " WHERE logicalrelid = 'keen.users'::regclass"
            ).fetchone()[0]  # type: ignore[index]
        self.calls: list[Call] = []

    @contextmanager
    def watch(self, q: Queries, name: str, who: str) -> Iterator[None]:
        call = Call(name, who)
        self.calls.append(call)

        def notice(diag: psycopg.errors.Diagnostic) -> None:
            for match in SHARD.finditer(diag.message_primary or ""):
                info = self.shards.get(int(match[2]))
                if info is None:
                    continue
                rel, method, coloc, minv = info
                if method == "h" and coloc == self.tenant_group:
                    call.groups.add((coloc, minv))
                else:
                    call.other.add(rel)

        q.conn.execute("SET LOCAL citus.log_remote_commands = on")
        q.conn.add_notice_handler(notice)
        try:
            yield
        except Exception as exc:
            call.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            raise
        finally:
            q.conn.remove_notice_handler(notice)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run(url: str) -> Routing:
    routing = Routing(url)
    app = Database(Settings(database_url=url, pool_min_size=1, pool_max_size=2))
    ops = Database(
        Settings(database_url=url, app_role="keen_owner", pool_min_size=1, pool_max_size=2)
    )
    stats = Database(
        Settings(database_url=url, app_role="keen_analytics", pool_min_size=1, pool_max_size=1)
    )
    tag = uuid.uuid4().hex[:10]
    soon = datetime.now(UTC) + timedelta(days=1)

    def call(
        db: Database, who: str, name: str, fn: Callable[[Queries], Any], user: Any = None
    ) -> Any:
        opened = db.service() if user is None else db.tenant(user)
        try:
            with opened as q, routing.watch(q, name, who):
                return fn(q)
        except Exception:  # recorded by watch(): the run goes on to the next call
            return None

    with app, ops, stats:
        users = []
        for n in ("a", "b"):
            users.append(
                call(
                    app,
                    "service",
                    "register_user",
                    lambda q, n=n: q.users.register_user(
                        email=f"r{tag}{n}@example.com",
                        username=f"r{tag}{n}",
                        password_hash=hash_password("correct horse battery staple"),
                        timezone="UTC",
                    ),
                )
            )
        alice = users[0]
        t = lambda name, fn: call(app, "tenant", name, fn, alice)  # noqa: E731
        s = lambda name, fn: call(app, "service", name, fn)  # noqa: E731
        o = lambda name, fn: call(ops, "operator", name, fn)  # noqa: E731
        s("login_lookup", lambda q: q.users.login_lookup(login=f"r{tag}a@example.com"))
        t("record_login", lambda q: q.users.record_login(ip=ip_address("192.0.2.1")))
        t("set_client_ip", lambda q: q.users.set_client_ip(ip=ip_address("192.0.2.1")))
        t("current_user", lambda q: q.users.current_user())
        t(
            "update_profile",
            lambda q: q.users.update_profile(display_name="Alice", timezone="Europe/Paris"),
        )
        t(
            "create_auth_token",
            lambda q: q.users.create_auth_token(
                token_type="jwt_refresh",
                token_hash=sha(f"{tag}-r1"),
                scopes=["read"],
                expires_at=soon,
                rate_limit_per_hour=100,
            ),
        )
        s("authenticate_token", lambda q: q.users.authenticate_token(token_hash=sha(f"{tag}-r1")))
        t(
            "rotate_refresh_token",
            lambda q: q.users.rotate_refresh_token(
                token_hash=sha(f"{tag}-r1"), new_token_hash=sha(f"{tag}-r2"), expires_at=soon
            ),
        )
        tokens = t("list_auth_tokens", lambda q: q.users.list_auth_tokens()) or []
        if tokens:
            t("revoke_token", lambda q: q.users.revoke_token(token_id=tokens[0].id))
        t(
            "start_email_verification",
            lambda q: q.users.start_email_verification(
                token_hash=sha(f"{tag}-v1"), expires_at=soon
            ),
        )
        s("confirm_email", lambda q: q.users.confirm_email(token_hash=sha(f"{tag}-v1")))
        t(
            "change_email",
            lambda q: q.users.change_email(
                email=f"r{tag}new@example.com", token_hash=sha(f"{tag}-v2"), expires_at=soon
            ),
        )
        t(
            "change_password",
            lambda q: q.users.change_password(
                password_hash=hash_password("another horse battery staple")
            ),
        )
        codes = [sha(f"{tag}-c{i}") for i in range(3)]
        t(
            "enroll_mfa",
            lambda q: q.users.enroll_mfa(
                secret_ciphertext="k1:" + "A" * 48, recovery_code_hashes=codes
            ),
        )
        t("enable_mfa", lambda q: q.users.enable_mfa())
        t("get_mfa_secret", lambda q: q.users.get_mfa_secret())
        t("use_recovery_code", lambda q: q.users.use_recovery_code(code_hash=codes[0]))
        t("disable_mfa", lambda q: q.users.disable_mfa())
        t("list_user_audit_log", lambda q: q.users.list_user_audit_log(max_rows=10))
        o("suspend_user", lambda q: q.users.suspend_user(user_id=users[1], reason="review"))
        o("reactivate_user", lambda q: q.users.reactivate_user(user_id=users[1]))
        o("set_user_role", lambda q: q.users.set_user_role(user_id=users[1], role="admin"))
        o(
            "set_billing",
            lambda q: q.users.set_billing(
                user_id=users[1], billing_customer_id=f"cus_{tag}", subscription_tier="team"
            ),
        )

        t(
            "add_credits",
            lambda q: q.credits.add_credits(amount=Decimal("100"), idempotency_key=f"{tag}-buy"),
        )
        t("credit_balance", lambda q: q.credits.credit_balance())
        t("check_credits", lambda q: q.credits.check_credits(amount=Decimal("1")))
        t("round_cost", lambda q: q.credits.round_cost(cost=Decimal("0.123456")))
        t("set_spending_limits", lambda q: q.credits.set_spending_limits(daily_limit=Decimal("90")))
        t(
            "configure_auto_recharge",
            lambda q: q.credits.configure_auto_recharge(
                enabled=True, threshold=Decimal("95"), amount=Decimal("20")
            ),
        )
        t(
            "deduct_credits",
            lambda q: q.credits.deduct_credits(amount=Decimal("6"), idempotency_key=f"{tag}-d1"),
        )
        # Bob's account asks for a recharge too, for the billing service to fail below.
        bob = users[1]
        for name, fn in [
            ("add_credits", lambda q: q.credits.add_credits(amount=Decimal("100"))),
            (
                "configure_auto_recharge",
                lambda q: q.credits.configure_auto_recharge(enabled=True, threshold=Decimal("99")),
            ),
            ("deduct_credits", lambda q: q.credits.deduct_credits(amount=Decimal("2"))),
        ]:
            call(app, "tenant", name, fn, bob)
        t("list_credit_transactions", lambda q: q.credits.list_credit_transactions(limit=10))
        hold = t(
            "hold_credits",
            lambda q: q.credits.hold_credits(amount=Decimal("5"), idempotency_key=f"{tag}-h1"),
        )
        if hold is not None:
            t(
                "capture_hold",
                lambda q: q.credits.capture_hold(hold_id=hold.id, amount=Decimal("2")),
            )
        hold2 = t("hold_credits", lambda q: q.credits.hold_credits(amount=Decimal("3")))
        if hold2 is not None:
            t("release_hold", lambda q: q.credits.release_hold(hold_id=hold2.id))
        claimed = (
            o("claim_recharge_requests", lambda q: q.credits.claim_recharge_requests(limit=10))
            or []
        )
        mine = [r for r in claimed if r.user_id == alice]
        if mine:
            o(
                "complete_recharge_request",
                lambda q: q.credits.complete_recharge_request(
                    request_id=mine[0].id, stripe_payment_intent_id=f"pi_{tag}"
                ),
            )
        bobs = [r for r in claimed if r.user_id == bob]
        if bobs:
            o(
                "fail_recharge_request",
                lambda q: q.credits.fail_recharge_request(request_id=bobs[0].id, reason="declined"),
            )
        o("sweep_expired_holds", lambda q: q.credits.sweep_expired_holds())
        o("verify_ledger", lambda q: q.credits.verify_ledger())

        t(
            "start_session",
            lambda q: q.sessions.start_session(
                session_id=f"{tag}-root", vision="v", working_directory="/w", git_branch="main"
            ),
        )
        t(
            "start_session",
            lambda q: q.sessions.start_session(
                session_id=f"{tag}-child",
                vision="v",
                working_directory="/w",
                git_branch="main",
                parent_session_id=f"{tag}-root",
            ),
        )
        t(
            "update_session_progress",
            lambda q: q.sessions.update_session_progress(
                session_id=f"{tag}-child", phase="PLAN", tokens=100, cost=Decimal("0.5")
            ),
        )
        root = t("get_session", lambda q: q.sessions.get_session(session_id=f"{tag}-root"))
        if root is not None:
            t("get_session_by_id", lambda q: q.sessions.get_session_by_id(id=root.id))
        t("list_sessions", lambda q: q.sessions.list_sessions(limit=10))
        t("session_tree", lambda q: q.sessions.session_tree(session_id=f"{tag}-root"))
        t("list_session_events", lambda q: q.sessions.list_session_events(limit=50))
        t("session_events_waiting", lambda q: q.sessions.session_events_waiting())
        t(
            "open_connection",
            lambda q: q.sessions.open_connection(
                connection_id=f"{tag}-ws",
                client_ip=ip_address("192.0.2.1"),
                session_id=f"{tag}-root",
            ),
        )
        t("ping_connection", lambda q: q.sessions.ping_connection(connection_id=f"{tag}-ws"))
        t("close_connection", lambda q: q.sessions.close_connection(connection_id=f"{tag}-ws"))
        t(
            "complete_session",
            lambda q: q.sessions.complete_session(session_id=f"{tag}-child", success=True),
        )
        t("cancel_session", lambda q: q.sessions.cancel_session(session_id=f"{tag}-root"))
        t(
            "session_cost_breakdown",
            lambda q: q.analytics.session_cost_breakdown(session_id=f"{tag}-root"),
        )
        t(
            "usage_report",
            lambda q: q.analytics.usage_report(
                from_=date.today() - timedelta(days=1), to=date.today()
            ),
        )
        o(
            "prune_session_events",
            lambda q: q.sessions.prune_session_events(older_than=timedelta(days=30)),
        )
        o(
            "reap_stale_connections",
            lambda q: q.sessions.reap_stale_connections(idle=timedelta(hours=1)),
        )
        o(
            "end_idle_transactions",
            lambda q: q.sessions.end_idle_transactions(idle=timedelta(hours=1)),
        )
        o("rebuild_usage_stats", lambda q: q.analytics.rebuild_usage_stats(user_id=alice))
        o("verify_usage_stats", lambda q: q.analytics.verify_usage_stats())
        call(
            stats,
            "analytics",
            "refresh_dashboard_metrics",
            lambda q: q.analytics.refresh_dashboard_metrics(),
        )
        call(stats, "analytics", "dashboard_metrics", lambda q: q.analytics.dashboard_metrics())
        t("close_account", lambda q: q.users.close_account())
    return routing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    args = parser.parse_args(argv)
    routing = run(args.url)
    width = max(len(c.name) for c in routing.calls)
    for c in routing.calls:
        extra = f"  + {', '.join(sorted(c.other))}" if c.other else ""
        print(
            f"{c.name:<{width}}  {c.who:<9}  {c.verdict}{extra}{'  ' + c.error if c.error else ''}"
        )
    verdicts: dict[str, int] = {}
    for c in routing.calls:
        verdicts[c.verdict] = verdicts.get(c.verdict, 0) + 1
    names = {c.name for c in routing.calls}
    print(
        f"\n{len(routing.calls)} calls of {len(names)} public functions:",
        ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items(), key=lambda x: -x[1])),
    )
    return 1 if any(c.error for c in routing.calls) else 0


if __name__ == "__main__":
    sys.exit(main())
