"""Usage ingestion: the one service behind the command, the task and the API.

A source is parsed record by record and written in chunks; each chunk commits
with the batch's counters, so progress is visible while a large file loads
and a crash loses nothing that a re-run (idempotent by event key) won't redo.
"""

import io
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from allocation.access import Permission, access_require, token_of, user_of
from allocation.choices import UsageBatchStatus, UsageSourceFormat
from allocation.models import UsageBatch, UsageRejection
from pricing.errors import NotFound, ValidationFailed
from pricing.selectors import unit_modalities
from pricing.task_queue import task_queue_on_commit

from .parsers.anthropic_usage import parse_anthropic_usage
from .parsers.csv_events import parse_csv
from .parsers.events import event_lines
from .parsers.jsonl_events import parse_jsonl
from .parsers.openai_usage import parse_openai_usage
from .parsers.otel import parse_otel
from .records import LineBuilder, ParsedRecord, RejectedRecord, RowError, SourceFormatError
from .writer import ledger_writer

__all__ = [
    "EventResult",
    "SourceFormatError",
    "usage_batch_create",
    "usage_batch_ingest_file",
    "usage_ingest_events",
    "usage_ingest_file",
    "usage_upload_queue",
]

logger = logging.getLogger(__name__)

Parser = Callable[..., Iterator[ParsedRecord | RejectedRecord]]
PARSERS: dict[str, Parser] = {
    UsageSourceFormat.CSV: parse_csv,
    UsageSourceFormat.JSONL: parse_jsonl,
    UsageSourceFormat.OPENAI_USAGE: parse_openai_usage,
    UsageSourceFormat.ANTHROPIC_USAGE: parse_anthropic_usage,
    UsageSourceFormat.OTEL: parse_otel,
}
FILE_FORMATS: tuple[str, ...] = tuple(PARSERS)
ProgressCallback = Callable[[UsageBatch], None]


class _CountingReader(io.RawIOBase):
    """Counts bytes read from a binary file, for progress while text is parsed."""

    def __init__(self, raw: io.BufferedReader):
        self.raw = raw
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.bytes_read += n or 0
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def usage_batch_create(
    *, source_format: str, source_name: str, created_by=None, bytes_total: int | None = None
) -> UsageBatch:
    """A batch recording who or what sends it: `created_by` is a user, a service account
    (its token is kept), or None for an operator's command on the server."""
    if source_format not in UsageSourceFormat.values:
        raise ValidationFailed(
            f"unknown format {source_format!r}; formats are {', '.join(FILE_FORMATS)}", code="unknown_format"
        )
    return UsageBatch.objects.create(
        source_format=source_format,
        source_name=source_name[:500],
        created_by=user_of(created_by),
        api_token=token_of(created_by),
        bytes_total=bytes_total,
    )


def usage_ingest_file(
    *, path: str | os.PathLike, source_format: str, created_by=None, progress: ProgressCallback | None = None
) -> UsageBatch:
    """Ingest one file into the ledger; returns its batch (completed or refused)."""
    path = Path(path)
    if source_format not in PARSERS:
        raise ValidationFailed(
            f"unknown format {source_format!r}; formats are {', '.join(FILE_FORMATS)}", code="unknown_format"
        )
    if not path.is_file():
        raise NotFound(f"{path}: no such file", code="file_not_found")
    batch = usage_batch_create(
        source_format=source_format, source_name=str(path), created_by=created_by, bytes_total=path.stat().st_size
    )
    return usage_batch_ingest_file(batch=batch, path=path, progress=progress)


def usage_batch_ingest_file(
    *, batch: UsageBatch, path: str | os.PathLike, progress: ProgressCallback | None = None
) -> UsageBatch:
    """Run a created batch over its file (the Celery task's entry point).

    A finished batch is left as it is, so a redelivered task does no harm; a
    batch whose worker died part-way starts over, and the lines it had already
    written are then found in the ledger and counted as duplicates.
    """
    if batch.status in {UsageBatchStatus.COMPLETED, UsageBatchStatus.REFUSED}:
        return batch
    parser = PARSERS[batch.source_format]
    _batch_start(batch)
    raw = _CountingReader(open(path, "rb"))  # noqa: SIM115 - closed below
    stream = io.TextIOWrapper(io.BufferedReader(raw, buffer_size=1 << 20), encoding="utf-8-sig", newline="")
    builder = LineBuilder(batch_id=batch.pk, unit_modalities=unit_modalities())
    try:
        records = parser(stream, builder=builder)
        _write_records(batch, records, byte_counter=lambda: raw.bytes_read, progress=progress)
    except SourceFormatError as exc:
        return _batch_refuse(batch, f"{Path(path).name}: {exc.message}")
    except UnicodeDecodeError as exc:
        return _batch_refuse(batch, f"{Path(path).name}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except Exception as exc:
        _batch_fail(batch, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        stream.close()
    return _batch_finish(batch)


def usage_upload_queue(*, uploaded_file, source_format: str, actor) -> UsageBatch:
    """Keep an uploaded source and queue its ingestion; the batch shows progress."""
    if actor is not None:  # None: an operator on the server (a command, the demo)
        access_require(actor, Permission.FEED_LEDGER, doing="upload usage")
    if source_format not in PARSERS:
        raise ValidationFailed(
            f"unknown format {source_format!r}; formats are {', '.join(FILE_FORMATS)}", code="unknown_format"
        )
    name = Path(uploaded_file.name).name
    batch = usage_batch_create(
        source_format=source_format, source_name=name, created_by=actor, bytes_total=uploaded_file.size
    )
    folder = Path(settings.MEDIA_ROOT) / "usage-uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"batch-{batch.pk}-{name}"
    with open(path, "wb") as out:
        for chunk in uploaded_file.chunks():
            out.write(chunk)
    task_queue_on_commit("allocation.tasks.usage_batch_ingest_task", batch.pk, str(path))
    return batch


@dataclass(frozen=True, slots=True)
class EventResult:
    index: int
    event_id: str
    status: str  # accepted | duplicate | rejected
    field: str = ""
    reason: str = ""


def usage_ingest_events(
    *, events: Sequence[Mapping], source_name: str, actor=None
) -> tuple[UsageBatch, list[EventResult]]:
    """Ingest a gateway's batch of events (our schema) with an answer per event. `actor`
    is who sends them (a user or the gateway's service account); None is an operator on
    the server (a command, the demo)."""
    if actor is not None:
        access_require(actor, Permission.FEED_LEDGER, doing="send usage events")
    if not isinstance(events, Sequence) or isinstance(events, str | bytes):
        raise ValidationFailed("events must be a list of event objects", code="invalid_events")
    batch = usage_batch_create(source_format=UsageSourceFormat.API, source_name=source_name, created_by=actor)
    _batch_start(batch)
    builder = LineBuilder(batch_id=batch.pk, unit_modalities=unit_modalities())
    results: dict[int, EventResult] = {}
    records: list[ParsedRecord | RejectedRecord] = []
    for index, event in enumerate(events, start=1):
        event_id = str(event.get("event_id", "")) if isinstance(event, Mapping) else ""
        raw = json.dumps(event, sort_keys=True, default=str)
        try:
            if not isinstance(event, Mapping):
                raise RowError("(event)", "not a JSON object")
            records.append(ParsedRecord(index, event_lines(event, line=index, builder=builder, raw_identity=raw)))
            results[index] = EventResult(index, event_id, "accepted")
        except RowError as exc:
            records.append(RejectedRecord(index, exc.field, exc.reason, raw[:2000]))
            results[index] = EventResult(index, event_id, "rejected", exc.field, exc.reason)
    duplicates = _write_records(batch, records, per_record_results=True)
    for index in duplicates:
        results[index] = EventResult(index, results[index].event_id, "duplicate")
    return _batch_finish(batch), [results[i] for i in sorted(results)]


def _batch_start(batch: UsageBatch) -> None:
    with transaction.atomic():
        batch.rejections.all().delete()
        batch.status = UsageBatchStatus.RUNNING
        batch.started_at = timezone.now()
        batch.rows_read = batch.inserted = batch.duplicate = batch.rejected = batch.lines_inserted = 0
        batch.bytes_read = 0
        batch.error = ""
        batch.save()


def _batch_finish(batch: UsageBatch) -> UsageBatch:
    batch.refresh_from_db()
    batch.status = UsageBatchStatus.COMPLETED
    batch.finished_at = timezone.now()
    if batch.bytes_total is not None:
        batch.bytes_read = batch.bytes_total
    batch.save(update_fields=["status", "finished_at", "bytes_read"])
    return batch


def _batch_refuse(batch: UsageBatch, message: str) -> UsageBatch:
    batch.refresh_from_db()
    batch.status = UsageBatchStatus.REFUSED
    batch.error = message
    batch.finished_at = timezone.now()
    batch.save(update_fields=["status", "error", "finished_at"])
    return batch


def _batch_fail(batch: UsageBatch, message: str) -> None:
    UsageBatch.objects.filter(pk=batch.pk).update(
        status=UsageBatchStatus.FAILED, error=message[:5000], finished_at=timezone.now()
    )


def _write_records(
    batch: UsageBatch,
    records: Iterable[ParsedRecord | RejectedRecord],
    *,
    byte_counter: Callable[[], int] | None = None,
    progress: ProgressCallback | None = None,
    per_record_results: bool = False,
) -> set[int]:
    """Write records in chunks; returns the source lines found to be duplicates.

    A chunk's parsed records stream into the writer as the parser yields them,
    so the database loads them while the parser reads on (a COPY runs in the
    server's process, on another core); its rejected records are set aside
    and saved with it. Each chunk commits with the batch's counters.
    """
    writer = ledger_writer(per_record_results=per_record_results)
    chunk_rows = settings.CHARGEBACK_INGEST_CHUNK_ROWS
    source = iter(records)
    rejected: list[RejectedRecord] = []
    duplicates: set[int] = set()
    read = 0

    def chunk() -> Iterator[ParsedRecord]:
        """The next chunk's parsed records; counts what it reads, keeps rejections aside."""
        nonlocal read
        for record in islice(source, chunk_rows):
            read += 1
            if isinstance(record, ParsedRecord):
                yield record
            else:
                rejected.append(record)

    while True:
        read = 0
        parsed = chunk()
        with transaction.atomic():
            result = writer.write(parsed)
            if next(parsed, None) is not None:
                raise RuntimeError(f"{type(writer).__name__} left records of a chunk unwritten")
            UsageRejection.objects.bulk_create(
                [
                    UsageRejection(batch=batch, line=r.line, field=r.field[:200], reason=r.reason[:500], raw=r.raw)
                    for r in rejected
                ],
                batch_size=1000,
            )
            update = {
                "rows_read": F("rows_read") + read,
                "inserted": F("inserted") + result.inserted,
                "duplicate": F("duplicate") + result.duplicate,
                "rejected": F("rejected") + len(rejected),
                "lines_inserted": F("lines_inserted") + result.lines_inserted,
            }
            if byte_counter is not None:
                update["bytes_read"] = byte_counter()
            UsageBatch.objects.filter(pk=batch.pk).update(**update)
        if result.duplicate_lines:
            duplicates.update(result.duplicate_lines)
        rejected.clear()
        if progress is not None:
            batch.refresh_from_db()
            progress(batch)
        if read < chunk_rows:  # the source is exhausted
            return duplicates
