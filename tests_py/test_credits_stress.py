"""Credits under load: 16 threads, 20 accounts, 5,000 mixed operations, retries and rollbacks.

Every call runs through keen_sql (generated bindings, tenant transactions as keen_app). 10% of
the calls that succeed are retried with the same idempotency key (and must return the same
row), 5% of transactions are rolled back after the call. Afterwards the operator's
verify_ledger() is empty, no balance or available amount is negative, and every entry that
was reported to a committed caller is in the ledger exactly once, and nothing else is.
"""

from __future__ import annotations

import datetime
import random
import threading
import uuid
from collections import Counter
from decimal import Decimal

import psycopg
import pytest

from keen_sql import errors
from keen_sql.database import Database, Queries
from tests_py.test_credits import Rollback, add, db, deduct, open_accounts, verify_ledger

__all__ = ["db"]  # the module-scoped Database fixture, shared with test_credits

THREADS = 16
ACCOUNTS = 20
OPERATIONS = 5000
# Outcomes a well-behaved caller may meet in this mix; anything else fails the test. A hold
# captured by one thread and captured again by another with another amount is KE005 (the
# same arguments would return the first capture's entry).
EXPECTED = (errors.InsufficientCredits, errors.InvalidStateTransition, errors.IdempotencyConflict)


class Ledger:
    """What the callers were told, shared by the threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.committed: list[uuid.UUID] = []
        self.rolled_back: list[uuid.UUID] = []
        self.holds: dict[uuid.UUID, list[tuple[uuid.UUID, Decimal]]] = {}
        self.outcomes: Counter[str] = Counter()


def one_call(
    q: Queries, rng: random.Random, user: uuid.UUID, ledger: Ledger
) -> tuple[uuid.UUID | None, str, object]:
    """Run one random operation; return (ledger entry id or None, kind, a retry thunk's key)."""
    kind = rng.choice(["deduct", "deduct", "add", "refund", "hold", "capture", "release"])
    amount = Decimal(rng.randint(1, 5000)) / 100
    key = uuid.uuid4().hex
    if kind == "deduct":
        return deduct(q, amount, key=key).id, kind, (amount, key)
    if kind in ("add", "refund"):
        return (
            add(q, amount, key=key, kind="purchase" if kind == "add" else "refund").id,
            kind,
            (amount, key),
        )
    if kind == "hold":
        hold = q.credits.hold_credits(
            session_id=None,
            amount=amount,
            idempotency_key=key,
            expires_in=datetime.timedelta(minutes=10),
        )
        assert hold is not None
        return hold.id, kind, (amount, key)
    with ledger.lock:
        candidates = list(ledger.holds.get(user, []))
    if not candidates:
        return None, "none", None
    hold_id, held = rng.choice(candidates)
    if kind == "capture":
        # Half the captures take the whole hold, half a part of it (the actual cost).
        part = (
            None
            if rng.random() < 0.5
            else max(Decimal("0.01"), (held * Decimal(rng.random())).quantize(Decimal("0.01")))
        )
        entry = q.credits.capture_hold(hold_id=hold_id, amount=part, description=None)
        assert entry is not None
        return entry.id, kind, hold_id
    q.credits.release_hold(hold_id=hold_id)
    return None, kind, hold_id


def retry(q: Queries, kind: str, args: tuple[Decimal, str], first: uuid.UUID) -> None:
    """Repeat a keyed call with the same key and arguments: it must return the same row."""
    amount, key = args
    if kind == "deduct":
        again = deduct(q, amount, key=key).id
    elif kind in ("add", "refund"):
        again = add(q, amount, key=key, kind="purchase" if kind == "add" else "refund").id
    else:
        hold = q.credits.hold_credits(
            session_id=None,
            amount=amount,
            idempotency_key=key,
            expires_in=datetime.timedelta(minutes=10),
        )
        assert hold is not None
        again = hold.id
    assert again == first, (kind, key)


def worker(
    db: Database,
    users: list[uuid.UUID],
    ledger: Ledger,
    seed: int,
    count: int,
    failures: list[BaseException],
) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        user = rng.choice(users)
        rollback = rng.random() < 0.05
        try:
            with db.tenant(user) as q:
                row_id, kind, args = one_call(q, rng, user, ledger)
                if (
                    row_id is not None
                    and kind in ("deduct", "add", "refund", "hold")
                    and rng.random() < 0.10
                ):
                    assert isinstance(args, tuple)
                    retry(q, kind, args, row_id)
                if rollback:
                    raise Rollback
            with ledger.lock:
                ledger.outcomes[kind] += 1
                if kind == "hold" and row_id is not None:
                    assert isinstance(args, tuple)
                    ledger.holds.setdefault(user, []).append((row_id, args[0]))
                elif row_id is not None:
                    ledger.committed.append(row_id)
        except Rollback:
            with ledger.lock:
                ledger.outcomes["rolled back"] += 1
                # Keyed entries only: a capture's id is derived from its hold and may be
                # captured (committed) later by another call.
                if row_id is not None and kind in ("deduct", "add", "refund"):
                    ledger.rolled_back.append(row_id)
        except EXPECTED as exc:
            with ledger.lock:
                ledger.outcomes[type(exc).__name__] += 1
        except BaseException as exc:
            failures.append(exc)
            return


@pytest.mark.slow
def test_16_threads_5000_mixed_operations_keep_every_invariant(db: Database, db_url: str) -> None:
    users = open_accounts(db_url, ACCOUNTS)
    for user in users:
        with db.tenant(user) as q:
            add(q, "200")
    ledger = Ledger()
    failures: list[BaseException] = []
    threads = [
        threading.Thread(
            target=worker,
            args=(
                db,
                users,
                ledger,
                seed,
                OPERATIONS // THREADS + (seed < OPERATIONS % THREADS),
                failures,
            ),
        )
        for seed in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [], failures[:3]
    assert sum(ledger.outcomes.values()) == OPERATIONS
    assert ledger.outcomes["InsufficientCredits"] > 0 and ledger.outcomes["rolled back"] > 0

    assert verify_ledger(db_url) == []
    with psycopg.connect(db_url) as conn:
        negative = conn.execute(
            "SELECT count(*) FROM keen.credit_accounts"
            " WHERE current_balance < 0 OR current_balance - held_amount < 0"
        ).fetchone()
        ids = [
            r[0]
            for r in conn.execute(
                # Entry 1 of each account is the opening purchase made above.
                "SELECT t.id FROM keen.credit_transactions AS t"
                " WHERE t.user_id = ANY(%s) AND t.entry_no > 1",
                (users,),
            )
        ]
        hold_ids = {
            r[0]
            for r in conn.execute(
                "SELECT h.id FROM keen.credit_holds AS h WHERE h.user_id = ANY(%s)", (users,)
            )
        }
    assert negative == (0,)
    reported_holds = {h for holds in ledger.holds.values() for h, _ in holds}
    assert hold_ids == reported_holds, "holds differ from the committed hold calls"
    in_ledger = Counter(ids)
    assert all(in_ledger[i] == 1 for i in ledger.committed), (
        "a reported entry is missing or doubled"
    )
    assert set(in_ledger) == set(ledger.committed), (
        "the ledger holds entries no committed caller was told of"
    )
    assert not set(ledger.rolled_back) & set(in_ledger), "a rolled-back entry reached the ledger"
