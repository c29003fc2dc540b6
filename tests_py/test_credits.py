"""Credits through keen_sql: Decimal in and out, one exception per contract error, real races.

Every call goes through the generated `keen_queries.credits` functions bound to a
`keen_sql.Database` tenant transaction (``q.credits.…``, as keen_app, under RLS), against a
database of this module's own. Accounts are opened directly by the superuser fixture
connection; operator functions run on a superuser connection.
"""

from __future__ import annotations

import asyncio
import datetime
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keen_queries import credits, models
from psycopg import pq

from keen_sql import cli, errors
from keen_sql.config import Settings
from keen_sql.database import AsyncDatabase, Database, Queries


class Rollback(Exception):
    """Raised inside a tenant block to roll its transaction back after the call."""


def open_accounts(db_url: str, count: int, *, timezone: str = "UTC") -> list[uuid.UUID]:
    """Create `count` users with empty credit accounts (as the superuser); return their ids."""
    ids = [uuid.uuid4() for _ in range(count)]
    with psycopg.connect(db_url) as conn:
        for user_id in ids:
            name = "cr" + user_id.hex[:20]
            conn.execute(
                "INSERT INTO keen.users (id, email, username, password_hash, timezone)"
                " VALUES (%s, %s, %s, repeat('h', 32), %s)",
                (user_id, name + "@example.com", name, timezone),
            )
            conn.execute(
                "INSERT INTO keen.credit_accounts (user_id) VALUES (%s)"
                " ON CONFLICT (user_id) DO NOTHING",
                (user_id,),
            )
    return ids


def verify_ledger(db_url: str) -> list[credits.VerifyLedgerRow]:
    """The operator's verify_ledger() (superuser connection, not keen_app)."""
    with psycopg.connect(db_url) as conn:
        return credits.verify_ledger(conn)


@pytest.fixture(scope="module")
def db(db_url: str) -> Iterator[Database]:
    """A keen_sql Database on this module's database, big enough for 16 threads."""
    with Database(Settings(database_url=db_url, pool_min_size=1, pool_max_size=17)) as database:
        yield database


def deduct(
    q: Queries, amount: str | Decimal, key: str | None = None, session_id: uuid.UUID | None = None
) -> models.CreditTransaction:
    """deduct_credits through the generated binding with keen_sql's error mapping."""
    row = q.credits.deduct_credits(
        amount=Decimal(amount),
        session_id=session_id,
        description=None,
        idempotency_key=key,
    )
    assert row is not None
    return row


def add(
    q: Queries, amount: str | Decimal, key: str | None = None, kind: str = "purchase"
) -> models.CreditTransaction:
    """add_credits through the generated binding."""
    row = q.credits.add_credits(
        amount=Decimal(amount),
        transaction_type=kind,
        description=None,
        idempotency_key=key,
        stripe_payment_intent_id=None,
        metadata=None,
    )
    assert row is not None
    return row


def balance(db: Database, user_id: uuid.UUID) -> credits.CreditBalanceRow:
    """credit_balance() of one tenant."""
    with db.tenant(user_id) as q:
        row = q.credits.credit_balance()
    assert row is not None
    return row


# ----- types ----------------------------------------------------------------------------


def test_credit_calls_take_and_return_decimal_uuid_and_aware_datetime(
    db: Database, db_url: str
) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        entry = add(q, "10.5")
        charged = deduct(q, "0.0001", key="types")
    assert isinstance(entry.amount, Decimal) and entry.amount == Decimal("10.5")
    assert isinstance(charged.balance_after, Decimal) and charged.balance_after == Decimal(
        "10.4999"
    )
    assert isinstance(charged.id, uuid.UUID) and charged.user_id == user
    assert (
        isinstance(charged.created_at, datetime.datetime) and charged.created_at.tzinfo is not None
    )
    assert balance(db, user).available_balance == Decimal("10.4999")


def test_async_twin_deducts_with_decimal_and_maps_KE001(db_url: str) -> None:
    (user,) = open_accounts(db_url, 1)

    async def scenario() -> Decimal:
        settings = Settings(database_url=db_url, pool_min_size=1, pool_max_size=2)
        async with AsyncDatabase(settings) as adb:
            async with adb.tenant(user) as q:
                await q.credits.add_credits(
                    amount=Decimal("3"),
                    transaction_type=None,
                    description=None,
                    idempotency_key=None,
                    stripe_payment_intent_id=None,
                    metadata=None,
                )
                row = await q.credits.deduct_credits(
                    amount=Decimal("1.0001"),
                    session_id=None,
                    description=None,
                    idempotency_key=None,
                )
            with pytest.raises(errors.InsufficientCredits):
                async with adb.tenant(user) as q:
                    await q.credits.deduct_credits(
                        amount=Decimal("5"),
                        session_id=None,
                        description=None,
                        idempotency_key=None,
                    )
        assert row is not None
        return row.balance_after

    assert asyncio.run(scenario()) == Decimal("1.9999")


# ----- one round trip: Database.deduct_credits -----------------------------------------


def test_one_trip_deduction_commits_returns_its_entry_and_honours_the_key(
    db: Database, db_url: str
) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        add(q, "10")
    row = db.deduct_credits(user, amount=Decimal("2.5"), idempotency_key="trip-1")
    assert (row.transaction_type, row.amount, row.balance_after) == (
        "usage",
        Decimal("-2.5"),
        Decimal("7.5"),
    )
    again = db.deduct_credits(str(user), amount=Decimal("2.5"), idempotency_key="trip-1")
    assert again.id == row.id  # the key's entry, not a second charge
    assert balance(db, user).current_balance == Decimal("7.5")
    assert verify_ledger(db_url) == []


def test_one_trip_deduction_sends_begin_to_commit_before_reading_any_reply(db_url: str) -> None:
    """libpq's protocol trace: every message up to COMMIT and Sync leaves before one comes back."""
    (user,) = open_accounts(db_url, 1)
    settings = Settings(database_url=db_url, pool_min_size=1, pool_max_size=1)
    with Database(settings) as one, tempfile.TemporaryFile("w+") as trace:
        with one.tenant(user) as q:
            add(q, "5")
        with one.pool.connection() as conn:  # the pool's only connection: traced from now on
            conn.pgconn.trace(trace.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        one.deduct_credits(user, amount=Decimal("1"))
        with one.pool.connection() as conn:
            conn.pgconn.untrace()
        assert balance(one, user).current_balance == Decimal("4")
        trace.seek(0)
        messages = [
            line.split("\t") for line in trace.read().splitlines() if line[:2] in ("F\t", "B\t")
        ]
    # A line is direction, length, message type and, for most types, its contents.
    begin = next(i for i, m in enumerate(messages) if m[2] == "Parse" and '"BEGIN"' in m[3])
    first_reply = next(i for i, m in enumerate(messages[begin:], begin) if m[0] == "B")
    sent = messages[begin:first_reply]
    assert any(m[2] == "Parse" and '"COMMIT"' in m[3] for m in sent), sent
    assert "Sync" in [m[2] for m in sent], sent
    done = [m[3].strip() for m in messages[first_reply:] if m[2] == "CommandComplete"]
    assert done[:5] == ['"BEGIN"', '"SELECT 1"', '"SET"', '"SELECT 1"', '"COMMIT"'], done


@pytest.mark.parametrize(
    ("amount", "error"),
    [("11", errors.InsufficientCredits), ("0", errors.InvalidAmount)],
)
def test_one_trip_errors_arrive_mapped_write_nothing_and_leave_the_connection_clean(
    db_url: str, amount: str, error: type[Exception]
) -> None:
    (user,) = open_accounts(db_url, 1)
    settings = Settings(database_url=db_url, pool_min_size=1, pool_max_size=1)
    with Database(settings) as one:  # one connection: the next call reuses the failed one
        with one.tenant(user) as q:
            add(q, "10")
        with pytest.raises(error):
            one.deduct_credits(user, amount=Decimal(amount), idempotency_key="trip-bad")
        with one.tenant(user) as q:
            rows = q.credits.list_credit_transactions(limit=10)
        assert [r.transaction_type for r in rows] == ["purchase"]
        # The failed key is not pinned, and the same connection serves the next charge.
        row = one.deduct_credits(user, amount=Decimal("1"), idempotency_key="trip-bad")
        assert row.balance_after == Decimal("9")


def test_one_trip_deductions_racing_on_one_account_never_overdraw(
    db: Database, db_url: str
) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        add(q, "1.00")
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def worker() -> None:
        start.wait()
        for _ in range(20):  # 8 threads, 20 charges of 0.01 each: 1.60 asked of 1.00
            try:
                db.deduct_credits(user, amount=Decimal("0.01"))
                outcomes.append("ok")
            except errors.InsufficientCredits:
                outcomes.append("KE001")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (outcomes.count("ok"), outcomes.count("KE001")) == (100, 60)
    assert balance(db, user).current_balance == Decimal("0.00")
    assert verify_ledger(db_url) == []


def test_one_trip_async_twin_charges_and_maps_KE001(db: Database, db_url: str) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        add(q, "3")

    async def scenario() -> models.CreditTransaction:
        settings = Settings(database_url=db_url, pool_min_size=1, pool_max_size=1)
        async with AsyncDatabase(settings) as adb:
            with pytest.raises(errors.InsufficientCredits):
                await adb.deduct_credits(user, amount=Decimal("5"))
            return await adb.deduct_credits(user, amount=Decimal("1.0001"))

    assert asyncio.run(scenario()).balance_after == Decimal("1.9999")
    assert verify_ledger(db_url) == []


# ----- the original design's race -------------------------------------------------------


def test_two_concurrent_deductions_of_8_from_10_one_succeeds_other_raises_KE001(
    db: Database, db_url: str
) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        add(q, "10.00")
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def worker() -> None:
        start.wait()
        try:
            with db.tenant(user) as q:
                deduct(q, "8.00")
                # Keep the transaction (and the account lock) open so the other call overlaps.
                threading.Event().wait(0.2)
            outcomes.append("ok")
        except errors.InsufficientCredits:
            outcomes.append("KE001")

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["KE001", "ok"]
    assert balance(db, user).current_balance == Decimal("2.00")
    with db.tenant(user) as q:
        rows = q.credits.list_credit_transactions(limit=10)
    assert [r.transaction_type for r in rows] == ["usage", "purchase"]
    assert verify_ledger(db_url) == []


def test_concurrent_retries_of_one_key_charge_once(db: Database, db_url: str) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        add(q, "100")
    start = threading.Barrier(8)
    ids: list[uuid.UUID] = []

    def worker() -> None:
        start.wait()
        with db.tenant(user) as q:
            ids.append(deduct(q, "3.5", key="same-key").id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert balance(db, user).current_balance == Decimal("96.5")


# ----- each contract error is its own exception -----------------------------------------


def test_deduct_beyond_balance_raises_KE001(db: Database, db_url: str) -> None:
    (user,) = open_accounts(db_url, 1)
    with pytest.raises(errors.InsufficientCredits) as info, db.tenant(user) as q:
        deduct(q, "1")
    assert info.value.sqlstate == "KE001" and "required 1" in str(info.value)


def test_deduct_beyond_daily_limit_raises_KE002(db: Database, db_url: str) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        add(q, "100")
        q.credits.set_spending_limits(daily_limit=Decimal("5"), monthly_limit=None)
    with pytest.raises(errors.DailyLimitExceeded), db.tenant(user) as q:
        deduct(q, "5.0001")


def test_deduct_beyond_monthly_limit_raises_KE003(db: Database, db_url: str) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        add(q, "100")
        q.credits.set_spending_limits(daily_limit=None, monthly_limit=Decimal("7"))
        deduct(q, "4")
    with pytest.raises(errors.MonthlyLimitExceeded), db.tenant(user) as q:
        deduct(q, "3.5")


@pytest.mark.parametrize("amount", ["0", "-1", "NaN", "Infinity", "0.00001", "100000000"])
def test_invalid_amount_raises_KE004(db: Database, db_url: str, amount: str) -> None:
    (user,) = open_accounts(db_url, 1)
    with pytest.raises(errors.InvalidAmount), db.tenant(user) as q:
        add(q, amount)


def test_key_reused_with_other_arguments_raises_KE005(db: Database, db_url: str) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        add(q, "10", key="k")
    with pytest.raises(errors.IdempotencyConflict), db.tenant(user) as q:
        add(q, "11", key="k")


def test_capture_of_another_tenants_hold_raises_KE006(db: Database, db_url: str) -> None:
    alice, bob = open_accounts(db_url, 2)
    with db.tenant(alice) as q:
        add(q, "10")
        hold = q.credits.hold_credits(
            session_id=None,
            amount=Decimal("5"),
            idempotency_key=None,
            expires_in=datetime.timedelta(minutes=5),
        )
    assert hold is not None
    with pytest.raises(errors.NotFound), db.tenant(bob) as q:
        q.credits.capture_hold(hold_id=hold.id, amount=None, description=None)


def test_retried_capture_returns_the_original_entry_and_other_arguments_raise_KE005(
    db: Database, db_url: str
) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        add(q, "10")
        hold = q.credits.hold_credits(
            session_id=None,
            amount=Decimal("5"),
            idempotency_key="h",
            expires_in=datetime.timedelta(minutes=5),
        )
        assert hold is not None
        captured = q.credits.capture_hold(hold_id=hold.id, amount=Decimal("1.25"), description=None)
    assert captured is not None and captured.amount == Decimal("-1.25")
    # The reply was lost: the caller retries with the same arguments, in a new transaction.
    with db.tenant(user) as q:
        retried = q.credits.capture_hold(
            hold_id=hold.id, amount=Decimal("1.2500"), description=None
        )
    assert retried == captured
    with pytest.raises(errors.IdempotencyConflict), db.tenant(user) as q:
        q.credits.capture_hold(hold_id=hold.id, amount=None, description=None)
    assert balance(db, user).available_balance == Decimal("8.75")


def test_capture_of_a_released_hold_raises_KE007(db: Database, db_url: str) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        add(q, "10")
        hold = q.credits.hold_credits(
            session_id=None,
            amount=Decimal("5"),
            idempotency_key=None,
            expires_in=None,
        )
        assert hold is not None
        q.credits.release_hold(hold_id=hold.id)
    with pytest.raises(errors.InvalidStateTransition), db.tenant(user) as q:
        q.credits.capture_hold(hold_id=hold.id, amount=None, description=None)
    assert balance(db, user).available_balance == Decimal("10")


def test_deduct_without_tenant_context_raises_KE010(db: Database) -> None:
    with pytest.raises(errors.NoTenantContext), db.service() as q:
        deduct(q, "1")


def test_add_credits_of_type_usage_raises_KE013(db: Database, db_url: str) -> None:
    (user,) = open_accounts(db_url, 1)
    with pytest.raises(errors.InvalidArgument), db.tenant(user) as q:
        add(q, "1", kind="usage")


def test_failed_call_does_not_pin_its_key(db: Database, db_url: str) -> None:
    (user,) = open_accounts(db_url, 1)
    with pytest.raises(errors.InsufficientCredits), db.tenant(user) as q:
        deduct(q, "5", key="retry-me")
    with db.tenant(user) as q:
        add(q, "5")
    with db.tenant(user) as q:
        assert deduct(q, "5", key="retry-me").balance_after == Decimal("0")


# ----- auto-recharge outbox and its wake-up ---------------------------------------------


def test_deduction_under_threshold_records_one_request_and_notifies_keen_recharge(
    db: Database, db_url: str
) -> None:
    (user,) = open_accounts(db_url, 1)
    with db.tenant(user) as q:
        add(q, "30")
        q.credits.configure_auto_recharge(
            enabled=True,
            threshold=Decimal("20"),
            amount=Decimal("25"),
        )
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN keen_recharge")
        with db.tenant(user) as q:
            deduct(q, "15")
        with db.tenant(user) as q:
            deduct(q, "1")
        notes = list(listener.notifies(timeout=2.0, stop_after=1))
        with psycopg.connect(db_url) as ops:
            claimed = credits.claim_recharge_requests(ops, limit=1000, reclaim_after=None)
            mine = [r for r in claimed if r.user_id == user]
            # A wake-up naming nothing (no request, no tenant): the workers claim what is pending.
            assert len(mine) == 1 and len(notes) == 1 and notes[0].payload == ""
            purchase = credits.complete_recharge_request(
                ops, request_id=mine[0].id, stripe_payment_intent_id=None
            )
    assert purchase is not None and purchase.amount == Decimal("25")
    assert balance(db, user).current_balance == Decimal("39")


# ----- property: the database agrees with a simple model, step by step ------------------


@dataclass
class Model:
    """What an account should look like: balance, holds, today's spending, limits, keys."""

    daily: Decimal | None
    monthly: Decimal | None
    balance: Decimal = Decimal(0)
    spent: Decimal = Decimal(0)
    holds: list[tuple[Decimal, str]] = field(default_factory=list)  # (amount, status)
    keys: dict[str, tuple[str, Decimal]] = field(default_factory=dict)
    captured: dict[int, Decimal] = field(default_factory=dict)  # hold index -> amount captured

    @property
    def held(self) -> Decimal:
        return sum((a for a, s in self.holds if s == "active"), Decimal(0))

    def limit_error(self, amount: Decimal) -> str | None:
        reach = self.spent + self.held + amount
        if self.daily is not None and reach > self.daily:
            return "KE002"
        if self.monthly is not None and reach > self.monthly:
            return "KE003"
        return None

    def apply(self, op: tuple[str, Decimal, int | None, str | None]) -> str | None:
        """Apply one operation; return the expected error code or None."""
        kind, amount, index, key = op
        valid = amount > 0 and amount == amount.quantize(Decimal("0.0001"))
        if kind in ("add", "deduct", "hold") and not valid:
            return "KE004"
        if kind in ("add", "deduct") and key is not None and key in self.keys:
            return None if self.keys[key] == (kind, amount) else "KE005"
        if kind == "add":
            self.balance += amount
        elif kind == "deduct":
            error = "KE001" if amount > self.balance - self.held else self.limit_error(amount)
            if error:
                return error
            self.balance -= amount
            self.spent += amount
        elif kind == "hold":
            error = "KE001" if amount > self.balance - self.held else self.limit_error(amount)
            if error:
                return error
            self.holds.append((amount, "active"))
        else:
            assert index is not None
            if index >= len(self.holds):
                return "skip"
            held, status = self.holds[index]
            if kind == "release":
                if status == "captured":
                    return "KE007"
                self.holds[index] = (held, "released" if status == "active" else status)
                return None
            if not valid:
                return "KE004"
            if status == "captured":
                # A retried capture (same amount, same default description) returns the
                # original entry and changes nothing; another amount is KE005 (0012).
                return None if amount == self.captured[index] else "KE005"
            if status != "active":
                return "KE007"
            if amount > held:
                return "KE004"
            self.holds[index] = (held, "captured")
            self.captured[index] = amount
            self.balance -= amount
            self.spent += amount
        if key is not None and kind in ("add", "deduct"):
            self.keys[key] = (kind, amount)
        return None


amounts = st.one_of(
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("30"), places=4),
    st.sampled_from([Decimal("0"), Decimal("-1"), Decimal("0.00001")]),
)
operations = st.tuples(
    st.sampled_from(["add", "deduct", "deduct", "hold", "capture", "release"]),
    amounts,
    st.integers(min_value=0, max_value=3),
    st.sampled_from([None, None, "k1", "k2"]),
).map(
    lambda t: (
        t[0],
        t[1],
        t[2] if t[0] in ("capture", "release") else None,
        t[3] if t[0] in ("add", "deduct") else None,
    )
)
limits = st.sampled_from([None, Decimal("20"), Decimal("45")])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operations, min_size=1, max_size=15), daily=limits, monthly=limits)
def test_random_operation_sequences_agree_with_a_model_step_by_step(
    db: Database,
    db_url: str,
    ops: list[tuple[str, Decimal, int | None, str | None]],
    daily: Decimal | None,
    monthly: Decimal | None,
) -> None:
    if daily is not None and monthly is not None and daily > monthly:
        daily, monthly = monthly, daily
    (user,) = open_accounts(db_url, 1)
    model = Model(daily=daily, monthly=monthly)
    with db.tenant(user) as q:
        add(q, "100")
        q.credits.set_spending_limits(daily_limit=daily, monthly_limit=monthly)
    model.balance = Decimal(100)
    hold_ids: list[uuid.UUID] = []
    for op in ops:
        kind, amount, index, key = op
        if kind in ("capture", "release") and (index is None or index >= len(hold_ids)):
            continue
        expected = model.apply(op)
        got: str | None = None
        try:
            with db.tenant(user) as q:
                if kind == "add":
                    add(q, amount, key=key)
                elif kind == "deduct":
                    deduct(q, amount, key=key)
                elif kind == "hold":
                    hold = q.credits.hold_credits(
                        session_id=None,
                        amount=amount,
                        idempotency_key=None,
                        expires_in=datetime.timedelta(hours=1),
                    )
                    assert hold is not None
                    hold_ids.append(hold.id)
                elif kind == "capture":
                    assert index is not None
                    q.credits.capture_hold(
                        hold_id=hold_ids[index],
                        amount=amount,
                        description=None,
                    )
                else:
                    assert index is not None
                    q.credits.release_hold(hold_id=hold_ids[index])
        except errors.KeenError as exc:
            got = exc.sqlstate
        assert got == expected, (op, model)
        now = balance(db, user)
        assert (now.current_balance, now.held_amount, now.spent_today) == (
            model.balance,
            model.held,
            model.spent,
        ), op
    assert [r for r in verify_ledger(db_url) if r.user_id == user] == []


def test_cli_credits_verify_exits_0_on_a_healthy_ledger_and_sweep_holds_runs(db_url: str) -> None:
    assert cli.main(["--database-url", db_url, "credits", "verify"]) == 0
    assert cli.main(["--database-url", db_url, "credits", "sweep-holds"]) == 0
