"""An allocation run's progress and the per-period lock.

Progress lives in the cache so that pages and the API read it while the run's own
transaction is open; the lock is a PostgreSQL advisory lock (on SQLite, one process
with eager tasks, the progress marker stands in for it).
"""

from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from allocation.choices import AllocationProgressState
from pricing.errors import Conflict
from pricing.periods import Period

__all__ = [
    "AllocationRunning",
    "advisory_key",
    "allocation_progress",
    "period_lock",
    "progress_set",
    "progress_start",
    "run_in_progress",
]


_PROGRESS_SECONDS = 6 * 3600


# A queued run no worker has started within this long is taken as lost, not as running.
_QUEUED_STALE_SECONDS = 15 * 60


class AllocationRunning(Conflict):
    code = "allocation_running"


def _progress_key(period: Period) -> str:
    return f"allocation-run:{period}"


def allocation_progress(*, period: Period) -> dict | None:
    """What the run of a period is doing now (step, percent, who, since), if one is running
    or just ended; kept in the cache so that pages and the API can read it while the run's
    own transaction is still open."""
    return cache.get(_progress_key(period))


def progress_set(period: Period, **state: Any) -> None:
    current = cache.get(_progress_key(period)) or {}
    cache.set(_progress_key(period), {**current, **state}, _PROGRESS_SECONDS)


def advisory_key(period: Period) -> list[int]:
    return [0x616C6C6F, period.year * 100 + period.month]


def run_in_progress(period: Period) -> dict | None:
    """The progress of a run of the period queued or running now, else None.

    On PostgreSQL the advisory lock is the truth: a marker left by a worker that died
    says "running" but holds no lock. A queued run counts until a worker should have
    started it.
    """
    marker = allocation_progress(period=period) or {}
    state = marker.get("state")
    if state == AllocationProgressState.QUEUED:
        started = marker.get("started_at", "")
        try:
            age = (timezone.now() - datetime.fromisoformat(started)).total_seconds()
        except ValueError:
            age = 0
        return marker if age < _QUEUED_STALE_SECONDS else None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", advisory_key(period))
            free = cursor.fetchone()[0]
            if free:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", advisory_key(period))
        return None if free else (marker or {"state": AllocationProgressState.RUNNING})
    return marker if state == AllocationProgressState.RUNNING else None


def period_lock(period: Period, actor) -> None:
    """Refuse a second run of a period while one runs: a PostgreSQL advisory lock held until
    the transaction ends; on SQLite (one process, eager tasks) the cache marks the run."""
    running = allocation_progress(period=period) or {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", advisory_key(period))
            locked = cursor.fetchone()[0]
    else:
        locked = running.get("state") != AllocationProgressState.RUNNING
    if not locked:
        who = running.get("user") or "someone"
        since = running.get("started_at", "")
        raise AllocationRunning(
            f"an allocation run of {period} is already running (started {since} by {who}); "
            "wait for it to finish, then run again if needed",
            extra={"period": str(period), "progress": running or None},
        )
    progress_start(period, actor, state=AllocationProgressState.RUNNING, step="starting")


def progress_start(period: Period, actor, *, state: str, step: str) -> None:
    """A fresh progress marker: who started the run, and when."""
    progress_set(
        period,
        state=state,
        step=step,
        percent=0,
        user=getattr(actor, "username", "") or "",
        started_at=timezone.now().isoformat(timespec="seconds"),
        run_id=None,
        error="",
    )
