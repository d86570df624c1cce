"""Running a call on a second database connection, for the race tests on PostgreSQL."""

import threading

from django.db import connections

__all__ = ["in_thread"]


def in_thread(outcome: dict, name: str, call) -> threading.Thread:
    """Start `call` in a thread (its own connection); its result or exception lands in
    `outcome[name]`, and the thread closes its connections when done."""

    def run() -> None:
        try:
            outcome[name] = call()
        except Exception as exc:  # reported by the test
            outcome[name] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread
