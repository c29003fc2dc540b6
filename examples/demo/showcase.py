"""The demonstration of `make run`: every capability of keen-sql, through the Python API.

Two tenants sign up, buy credits and get an API key; one runs a session tree (a root agent
that summons children, one of which summons its own) while a listener streams its events;
the sessions complete and are paid for from a hold and from the balance; each tenant then
tries to reach the other's data and fails; both read their usage report; an operator checks
the ledger and the statistics and refreshes the dashboard. On the way one tenant changes her
profile and turns MFA on, and the other closes her account. Every run uses fresh tenants,
so it can be repeated on the same database.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from keen_sql.bindings import Queries
from keen_sql.config import Settings
from keen_sql.database import Database
from keen_sql.errors import InsufficientCredits, KeenError
from keen_sql.events import EventListener, SessionEvent
from keen_sql.security import authenticate, hash_password, hash_token, issue_token


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print a step's title, then how long it took when it took more than a second."""
    print(f"\n== {title}", flush=True)
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    if elapsed >= 1:
        print(f"   ({elapsed:.1f} s)", flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows as an aligned text table."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "   "
            + "  ".join(
                c.rjust(w) if n and _numeric(c) else c.ljust(w)
                for c, w in zip(row, widths, strict=True)
            ).rstrip()
        )
        if n == 0:
            print("   " + "  ".join("-" * w for w in widths))


def _numeric(text: str) -> bool:
    return text.replace(".", "", 1).replace("-", "", 1).isdigit()


def refused(q: Queries, attempt: Callable[[], object]) -> str:
    """Run `attempt` in a savepoint of `q`'s transaction; say how keen refused it, if it did."""
    try:
        with q.conn.transaction():
            result = attempt()
    except KeenError as exc:
        return f"refused: {type(exc).__name__} ({exc.sqlstate})"
    except psycopg.Error as exc:
        return f"refused: {type(exc).__name__} ({exc.sqlstate})"
    if result is None or result == []:
        return "nothing visible"
    return f"ALLOWED: {result!r}"


class Listener(threading.Thread):
    """Collects a tenant's session events in the background until told to stop."""

    def __init__(self, url: str, user_id: uuid.UUID, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.listener = EventListener(url, user_id, poll_interval=0.5, settings=settings)
        self.events: list[SessionEvent] = []
        self.done = threading.Event()

    def run(self) -> None:
        """Stream events until `done` is set and the stream has been idle for a moment."""
        with self.listener:
            while not self.done.is_set():
                self.events.extend(self.listener.events(idle_timeout=0.5))


def signup(db: Database, name: str, run: str, credits: Decimal) -> uuid.UUID:
    """Register a tenant with a fresh e-mail and buy it `credits`; return its user id."""
    with db.service() as q:
        user_id = q.users.register_user(
            email=f"{name}.{run}@example.com",
            username=f"{name}_{run}",
            password_hash=hash_password(f"{name}-{run}-correct-horse"),
            display_name=name.title(),
            timezone="Europe/Berlin" if name == "ada" else "America/New_York",
        )
    with db.tenant(user_id) as q:
        q.credits.add_credits(
            amount=credits,
            transaction_type="purchase",
            description="card top-up",
            idempotency_key=f"order-{run}-{name}",
            stripe_payment_intent_id=f"pi_{run}_{name}",
            metadata={"channel": "demo"},
        )
    print(f"   {name}: user {user_id}, bought {credits} credits")
    return user_id


def start(q: Queries, sid: str, vision: str, parent: str | None) -> None:
    """Start one session of the tree."""
    q.sessions.start_session(
        session_id=sid,
        vision=vision,
        working_directory=f"/work/{sid}",
        git_branch=f"keen/{sid}",
        parent_session_id=parent,
    )


def progress(q: Queries, sid: str, phase: str, tokens: int, cost: str) -> None:
    """Report one step of progress of a session."""
    q.sessions.update_session_progress(
        session_id=sid,
        phase=phase,
        iterations=1,
        tool_calls=3,
        tokens=tokens,
        cost=Decimal(cost),
    )


def complete(q: Queries, sid: str, cost: str, created: list[str]) -> None:
    """Complete a session with its final cost; the database charges it."""
    q.sessions.complete_session(
        session_id=sid,
        success=True,
        total_cost=Decimal(cost),
        files_created=created,
        files_modified=["README.md"],
        completion_report={"summary": f"{sid} done"},
    )


def list_all(q: Queries) -> list[Any]:
    """The first page of the tenant's sessions, of any status."""
    return q.sessions.list_sessions(limit=10)


def print_tree(q: Queries, root: str) -> None:
    """Print the session tree as an indented tree with status, tokens and cost."""
    rows = q.sessions.session_tree(session_id=root)
    for row in rows:
        depth = row.depth or 0
        branch = "" if depth == 0 else "   " * (depth - 1) + "└─ "
        print(
            f"   {branch}{row.session_id}  [{row.current_phase}, {row.execution_status}]"
            f"  tokens {row.tokens_used}  cost {row.total_cost}"
        )


def print_ledger(q: Queries) -> None:
    """Print the tenant's ledger, oldest first."""
    rows = list(reversed(q.credits.list_credit_transactions(limit=50)))
    table(
        ["#", "type", "amount", "balance", "session", "description"],
        [
            (
                r.entry_no,
                r.transaction_type,
                r.amount,
                r.balance_after,
                "yes" if r.session_id else "",
                r.description,
            )
            for r in rows
        ],
    )


def _changed(changes: object) -> str:
    """The columns an audit row names, comma-separated."""
    return ", ".join(sorted(changes)) if isinstance(changes, dict) else ""


def accounts(
    db: Database, ada: uuid.UUID, grace: uuid.UUID, run: str, check: Callable[[bool, str], None]
) -> None:
    """Ada edits her profile and turns MFA on; grace closes her account (erasure)."""
    codes = [secrets.token_hex(10) for _ in range(3)]  # shown to ada once; stored hashed
    with db.tenant(ada) as q:
        q.users.set_client_ip(ip=ipaddress.ip_address("127.0.0.1"))  # recorded in the trail
        q.users.update_profile(
            display_name="Ada Lovelace",
            avatar_url=None,
            timezone=None,
            preferences={"theme": "dark"},
        )
        # Stands for the service's AES-GCM ciphertext of the TOTP secret: keen never holds the key.
        q.users.enroll_mfa(
            secret_ciphertext="demo-key:" + secrets.token_urlsafe(48),
            recovery_code_hashes=[hash_token(code) for code in codes],
        )
        q.users.enable_mfa()
    with db.tenant(ada) as q:
        left = q.users.use_recovery_code(code_hash=hash_token(codes[0]))
        again = refused(q, lambda: q.users.use_recovery_code(code_hash=hash_token(codes[0])))
        print(f"   spend the same recovery code again: {again}")
        check(left == 2 and again.startswith("refused: NotFound"), "a code works once")
        trail = q.users.list_user_audit_log(before_id=None, max_rows=10)
    table(
        ["audit id", "actor", "action", "ip", "changed"],
        [(r.id, r.actor, r.action, r.ip, _changed(r.changes)) for r in trail],
    )
    with db.tenant(grace) as q:
        q.users.close_account()
    with db.service() as q:
        gone = q.users.login_lookup(login=f"grace_{run}")
        again_user = q.users.register_user(
            email=f"grace.{run}@example.com",
            username=f"grace_{run}",
            password_hash=hash_password(f"grace-{run}-another"),
            timezone="UTC",
        )
    check(
        gone is None and again_user is not None,
        "grace closed her account: her personal data is erased, her e-mail and username are free",
    )


def scenario(database_url: str) -> int:
    """Run the whole demonstration on a migrated database; return 0 when every check held."""
    run = uuid.uuid4().hex[:6]
    settings = Settings(database_url=database_url, pool_max_size=4)
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(f"   {'ok ' if ok else 'FAIL'} {what}")
        if not ok:
            failures.append(what)

    with Database(settings) as db:
        with step("1. two tenants sign up and buy credits (argon2id hashes, idempotent purchases)"):
            ada = signup(db, "ada", run, Decimal("25.00"))
            grace = signup(db, "grace", run, Decimal("10.00"))
            with db.tenant(ada) as q:
                key = issue_token(q, "api_key", name="ci", scopes=["sessions:write"])
            with db.service() as q:
                who = authenticate(q, key.token, ip=ipaddress.ip_address("127.0.0.1"))
            check(
                who is not None and who.user_id == ada,
                "ada's new API key authenticates as ada (only its SHA-256 is stored)",
            )

        listener = Listener(database_url, ada, settings)
        listener.start()
        root = f"task-{run}"
        with step("2. ada runs a session tree: a root agent summons children, one summons its own"):
            with db.tenant(ada) as q:
                start(q, root, "Add OAuth login to the web app", None)
                session = q.sessions.get_session(session_id=root)
                hold = q.credits.hold_credits(
                    session_id=session.id,
                    amount=Decimal("6.00"),
                    idempotency_key=f"hold-{root}",
                    expires_in=timedelta(hours=1),
                )
                print(f"   hold of {hold.amount} credits reserved for {root}")
                progress(q, root, "PLAN", 1200, "0.40")
                progress(q, root, "SUMMON", 800, "0.25")
                for child in ("backend", "frontend"):
                    start(q, f"{root}.{child}", f"Implement the {child} part", root)
                start(q, f"{root}.backend.tests", "Write the tests", f"{root}.backend")
            with db.tenant(ada) as q:
                progress(q, f"{root}.backend", "PLAN", 3000, "0.90")
                progress(q, f"{root}.frontend", "PLAN", 2500, "0.70")
                progress(q, f"{root}.backend.tests", "PLAN", 900, "0.35")
                balance = q.credits.check_credits(amount=Decimal("20"))
                print(
                    f"   check_credits(20): sufficient={balance.sufficient}, "
                    f"available {balance.available_balance} of {balance.current_balance}"
                )
            with db.tenant(ada) as q:
                print_tree(q, root)

        with step("3. the sessions complete and are paid for in the same transaction"):
            with db.tenant(ada) as q:
                complete(q, f"{root}.backend.tests", "0.350000", ["tests/test_oauth.py"])
                complete(q, f"{root}.backend", "1.234567", ["app/oauth.py"])
                complete(q, f"{root}.frontend", "0.700000", ["web/login.tsx"])
                complete(q, root, "3.750000", ["docs/oauth.md"])  # captures the hold
            with db.tenant(ada) as q:
                print_tree(q, root)
                print("   ada's ledger:")
                print_ledger(q)
                bal = q.credits.credit_balance()
                print(
                    f"   balance {bal.current_balance}, held {bal.held_amount}, "
                    f"spent today {bal.spent_today}"
                )
                check(
                    bal.current_balance
                    == Decimal("25.00")
                    - Decimal("0.35")
                    - Decimal("1.2346")
                    - Decimal("0.70")
                    - Decimal("3.75"),
                    "balance = 25.00 - each session's cost (6-place costs rounded up to 4)",
                )
                check(
                    bal.held_amount == 0, "the root's hold was captured (3.75) and the rest freed"
                )
                breakdown = q.analytics.session_cost_breakdown(session_id=root)
                check(
                    breakdown[0].tree_cost == Decimal("6.034567"),
                    f"the task's cost (root + descendants) is {breakdown[0].tree_cost}",
                )
            try:
                with db.tenant(ada) as q:
                    q.credits.deduct_credits(
                        amount=Decimal("1000"),
                        description="too much",
                    )
                check(False, "an overdraft is refused")
            except InsufficientCredits as exc:
                check(
                    True, f"an overdraft is refused, nothing written: {exc.sqlstate} {exc.message}"
                )

        with step("4. the event stream (LISTEN keen_events + durable log), as a client sees it"):
            time.sleep(1.0)
            listener.done.set()
            listener.join(timeout=10)
            events = listener.events
            per_session: dict[uuid.UUID, list[int]] = {}
            for event in events:
                per_session.setdefault(event.session_id, []).append(event.seq)
            table(
                ["id", "session", "seq", "event"],
                [(e.id, str(e.session_id)[:8], e.seq, e.event_type) for e in events[:12]],
            )
            if len(events) > 12:
                print(f"   … {len(events) - 12} more")
            check(
                len(per_session) == 4
                and all(s == list(range(1, len(s) + 1)) for s in per_session.values()),
                f"{len(events)} events of 4 sessions, each session's in order with no gap",
            )
            ids = [e.id for e in events]
            check(ids == sorted(set(ids)), "event ids strictly increase: resumable after any id")

        with step("5. grace tries to reach ada's data (row-level security, composite keys)"):
            with db.tenant(grace) as q:
                print(
                    f"   read ada's session by id:       "
                    f"{refused(q, lambda: q.sessions.get_session(session_id=root))}"
                )
                print(f"   list sessions:                  {refused(q, lambda: list_all(q))}")
            with db.tenant(grace) as q:
                attempt = refused(q, lambda: start(q, f"intruder-{run}", "x", root))
                print(f"   start a child under ada's root: {attempt}")
                check(attempt.startswith("refused: NotFound"), "a foreign parent is not found")
            with db.tenant(grace) as q:
                rows: Any = q.conn.execute(
                    "SELECT count(*) FROM keen.agent_sessions WHERE user_id = %s", [ada]
                ).fetchone()
                check(rows[0] == 0, "a raw SELECT of ada's rows as grace sees 0 rows")
                ledger = q.credits.list_credit_transactions(limit=50)
                check(
                    all(r.user_id == grace for r in ledger) and len(ledger) == 1,
                    "grace's ledger holds her one purchase and nothing of ada's",
                )
            with db.tenant(grace) as q:
                hold_attempt = refused(
                    q,
                    lambda: q.credits.capture_hold(
                        hold_id=hold.id, amount=Decimal("1"), description="steal"
                    ),
                )
                print(f"   capture ada's hold:             {hold_attempt}")
                check(hold_attempt.startswith("refused"), "another tenant's hold cannot be used")
            try:
                with db.service() as q:
                    q.credits.credit_balance()
                check(False, "a tenant function without tenant context is refused")
            except KeenError as exc:
                check(exc.sqlstate == "KE010", f"no tenant context: {type(exc).__name__} (KE010)")

        with step("6. usage reports: each tenant sees its own days only"):
            today = date.today()
            for name, user in (("ada", ada), ("grace", grace)):
                with db.tenant(user) as q:
                    report = q.analytics.usage_report(
                        from_=today - timedelta(days=2), to=today + timedelta(days=1)
                    )
                print(f"   {name}:")
                table(
                    ["day", "started", "completed", "tokens", "cost", "bought", "spent"],
                    [
                        (
                            r.date_bucket,
                            r.sessions_started,
                            r.sessions_completed,
                            r.tokens_used,
                            r.total_cost,
                            r.credits_purchased,
                            r.credits_spent,
                        )
                        for r in report
                    ],
                )

        with step(
            "7. accounts: profile, MFA with one-time recovery codes, closing, the audit trail"
        ):
            accounts(db, ada, grace, run, check)

    with step("8. the operator's checks: ledger invariants, statistics, dashboard refresh"):
        with psycopg.connect(database_url, autocommit=True) as conn:
            ledger_faults = conn.execute("SELECT * FROM keen.verify_ledger()").fetchall()
            stats_faults = conn.execute("SELECT * FROM keen.verify_usage_stats()").fetchall()
            conn.execute("SELECT keen.refresh_dashboard_metrics()")
            hour: Any = conn.execute(
                "SELECT sessions_started, sessions_completed, active_users, credits_sold,"
                " credits_spent FROM keen.dashboard_metrics ORDER BY hour_bucket DESC LIMIT 1"
            ).fetchone()
        check(not ledger_faults, "verify_ledger(): no violated invariant")
        check(not stats_faults, "verify_usage_stats(): statistics match sessions and ledger")
        print(
            f"   dashboard, this hour (all tenants): {hour[0]} sessions started, {hour[1]} "
            f"completed, {hour[2]} active users, {hour[3]} credits sold, {hour[4]} spent"
        )

    print(f"\n{'all checks held' if not failures else f'{len(failures)} check(s) FAILED'}")
    return 0 if not failures else 1
