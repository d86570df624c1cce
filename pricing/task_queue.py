"""Queueing a Celery task from a service, by the task's name.

A service that hands work to a worker must not import its app's `tasks` module:
the tasks call the services, and the two would import each other. The service
names the task instead; the Celery app resolves the name (each app registers its
tasks when Django starts, in its `apps.py`), so eager mode and the broker behave
exactly as `task.delay` does.
"""

from celery import current_app
from django.db import transaction

__all__ = ["task_queue_on_commit"]


def task_queue_on_commit(name: str, *args: object) -> None:
    """Queue the task `name` with `args` once the current transaction commits (at once
    outside one), so that a worker never reads rows this transaction has not written.

    An unknown name fails here, in the caller's transaction, not later on commit.
    """
    task = current_app.tasks[name]
    transaction.on_commit(lambda: task.delay(*args))
