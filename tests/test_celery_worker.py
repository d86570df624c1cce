"""Usage ingestion queued as a Celery task: in-process, and through a real worker.

The worker test proves what production relies on: the task is serialized to
the broker, a separate process picks it up, reads the committed batch from the
same database, writes the ledger (COPY on PostgreSQL), and reports back
through the result backend. Queued twice, the same file inserts nothing.
"""

from decimal import Decimal

import pytest
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import EagerResult
from django.db.models import Sum

from allocation.choices import UsageBatchStatus
from allocation.models import UsageBatch, UsageLine, UsageRejection
from allocation.services.ledger import usage_batch_create
from allocation.tasks import usage_batch_ingest_task

GOOD_ROWS = 1000
HEADER = "event_id,occurred_at,provider,model,unit,quantity,team,feature,environment"
# (line in the file, row, field the rejection names)
BAD_ROWS = [
    (502, "evt-bad-1,2026-10-15T12:00:00Z,openai,gpt-4o-mini,input_token,lots,search,answers,production", "quantity"),
    (1003, "evt-bad-2,2026-10-15T12:00:00Z,,gpt-4o-mini,input_token,5,search,answers,production", "provider"),
]
TASK_TIMEOUT = 60  # seconds


def _good_row(i: int) -> str:
    unit = "input_token" if i % 2 else "output_token"
    return (
        f"evt-{i:05d},2026-10-{1 + i % 28:02d}T{i % 24:02d}:15:00Z,openai,gpt-4o-mini,{unit},{i * 10},"
        f"team-{i % 5},feature-{i % 7},production"
    )


def _write_usage_csv(tmp_path):
    """1,000 good rows, with a bad row in the middle and one at the end."""
    lines = [HEADER] + [_good_row(i) for i in range(1, GOOD_ROWS + 1)]
    for line_no, row, _field in BAD_ROWS:
        lines.insert(line_no - 1, row)
    path = tmp_path / "usage-2026-10.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


EXPECTED_QUANTITY = Decimal(sum(i * 10 for i in range(1, GOOD_ROWS + 1)))


def _queue_and_wait(path, worker=None) -> UsageBatch:
    batch = usage_batch_create(source_format="csv", source_name=path.name, bytes_total=path.stat().st_size)
    result = usage_batch_ingest_task.delay(batch.pk, str(path))
    if worker is not None:
        assert not isinstance(result, EagerResult), "the task ran in-process, not on the worker"
    try:
        outcome = result.get(timeout=TASK_TIMEOUT)
    except CeleryTimeoutError:
        tail = worker.log_tail() if worker is not None else ""
        pytest.fail(f"no result from the task within {TASK_TIMEOUT}s; worker log:\n{tail}", pytrace=False)
    assert outcome == {"batch_id": batch.pk, "status": UsageBatchStatus.COMPLETED, "rows_read": GOOD_ROWS + 2}
    batch.refresh_from_db()
    return batch


def _assert_first_load(batch: UsageBatch) -> None:
    assert batch.status == UsageBatchStatus.COMPLETED, batch.error
    assert batch.rows_read == batch.inserted + batch.duplicate + batch.rejected
    assert (batch.rows_read, batch.inserted, batch.duplicate, batch.rejected) == (GOOD_ROWS + 2, GOOD_ROWS, 0, 2)
    assert batch.lines_inserted == GOOD_ROWS
    assert batch.bytes_read == batch.bytes_total
    assert batch.finished_at is not None
    lines = UsageLine.objects.filter(batch=batch)
    assert lines.count() == GOOD_ROWS
    assert lines.aggregate(total=Sum("quantity"))["total"] == EXPECTED_QUANTITY
    assert lines.filter(unit="input_token").count() == GOOD_ROWS // 2
    assert lines.filter(team="team-3", environment="production").count() == GOOD_ROWS // 5
    rejections = list(UsageRejection.objects.filter(batch=batch).values_list("line", "field"))
    assert rejections == [(line_no, field) for line_no, _row, field in BAD_ROWS]


def _assert_second_load(batch: UsageBatch) -> None:
    assert batch.status == UsageBatchStatus.COMPLETED, batch.error
    assert batch.rows_read == batch.inserted + batch.duplicate + batch.rejected
    assert (batch.rows_read, batch.inserted, batch.duplicate, batch.rejected) == (GOOD_ROWS + 2, 0, GOOD_ROWS, 2)
    assert batch.lines_inserted == 0
    assert not UsageLine.objects.filter(batch=batch).exists()
    assert UsageLine.objects.count() == GOOD_ROWS
    assert UsageLine.objects.aggregate(total=Sum("quantity"))["total"] == EXPECTED_QUANTITY


@pytest.mark.django_db
def test_ingest_task_in_process_counts_every_row_and_dedupes_a_second_run(tmp_path):
    path = _write_usage_csv(tmp_path)
    _assert_first_load(_queue_and_wait(path))
    _assert_second_load(_queue_and_wait(path))


# transaction=True: the worker reads what this test committed. serialized_rollback:
# the unit catalog (seeded by a migration) is back for the tests that follow.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_ingest_task_through_a_real_worker_counts_every_row_and_dedupes_a_second_run(tmp_path, celery_worker):
    path = _write_usage_csv(tmp_path)
    _assert_first_load(_queue_and_wait(path, celery_worker))
    _assert_second_load(_queue_and_wait(path, celery_worker))


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_allocation_task_through_a_real_worker_gives_the_in_process_fingerprint(
    tmp_path, django_user_model, celery_worker
):
    """The worker reads the committed world, allocates in its own transaction, and gets the
    same fingerprint as the same run made in this process: reproducible across processes."""
    from allocation.models import AllocationRun
    from allocation.services.runs.run import allocation_run_execute
    from allocation.tasks import allocation_run_task

    from .allocation.runs_world import (
        MONTH,
        PERIOD,
        SCENARIO_INVOICE,
        build_mapping,
        build_org,
        build_prices,
        load_invoice,
        load_usage,
        make_approver,
        scenario_events,
    )

    build_org()
    build_prices()
    approver = make_approver(django_user_model)
    build_mapping(tmp_path, approver)
    load_usage(scenario_events())
    load_invoice(tmp_path, SCENARIO_INVOICE)
    in_process = allocation_run_execute(period=MONTH, actor=approver)

    result = allocation_run_task.delay(PERIOD, approver.pk)
    assert not isinstance(result, EagerResult), "the task ran in-process, not on the worker"
    try:
        outcome = result.get(timeout=TASK_TIMEOUT)
    except CeleryTimeoutError:
        pytest.fail(f"no result within {TASK_TIMEOUT}s; worker log:\n{celery_worker.log_tail()}", pytrace=False)
    on_worker = AllocationRun.objects.get(pk=outcome["allocation_run"])
    assert on_worker.fingerprint == in_process.fingerprint == outcome["fingerprint"]
    assert on_worker.created_by == approver
    in_process.refresh_from_db()
    assert (in_process.status, in_process.superseded_by_id) == ("superseded", on_worker.pk)
    assert on_worker.invoice_total == on_worker.allocated + on_worker.unallocated == Decimal("174.56")
