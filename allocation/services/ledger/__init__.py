"""Usage ingestion: the one service behind the command, the task and the API.

A source is parsed record by record and written in chunks (one COPY each on
PostgreSQL, which bounds memory), all in one transaction with the batch's
final counts and status: a load that fails for any reason (a bug, a lost
connection, a killed worker) leaves no line, rejection or version behind, on
PostgreSQL and SQLite alike, and the ledger never holds the lines of a batch
that is not completed. The batch is marked running (committed) before the load
and failed (after the rollback) when it fails, so it never stays pending or
running after a failure it saw.

Progress cannot go through the batch's row while its transaction is open
(nobody else sees the row), so each chunk publishes the batch's counts to the
cache (`usage_batch_progress`), which the batch selectors overlay on a running
batch; a caller's `progress` callback gets them too.
"""

import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from allocation.access import Permission, access_require, token_of, user_of
from allocation.choices import BUCKET_SOURCE_FORMATS, UsageBatchStatus, UsageSourceFormat
from allocation.models import UsageBatch, UsageRejection
from allocation.selectors.ledger import USAGE_PROGRESS_SECONDS, usage_progress_key
from pricing.errors import NotFound, ValidationFailed
from pricing.selectors import unit_modalities
from pricing.task_queue import task_queue_on_commit

from .buckets import BucketLedgerWriter
from .parsers.anthropic_usage import parse_anthropic_usage
from .parsers.csv_events import parse_csv
from .parsers.events import event_lines
from .parsers.jsonl_events import parse_jsonl
from .parsers.openai_usage import parse_openai_usage
from .parsers.otel import parse_otel
from .records import (
    LineBuilder,
    ParsedRecord,
    RejectedRecord,
    RowError,
    SourceFormatError,
    record_text,
    require_nesting,
    storable_text,
)
from .writer import LedgerWriter, ledger_writer

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
    batch whose worker died part-way wrote nothing (its transaction rolled
    back) and starts over.
    """
    if batch.status in {UsageBatchStatus.COMPLETED, UsageBatchStatus.REFUSED}:
        return batch
    parser = PARSERS[batch.source_format]
    _batch_start(batch)
    name = Path(path).name
    try:
        raw = _CountingReader(open(path, "rb"))  # noqa: SIM115 - closed below
    except OSError as exc:
        _batch_fail(batch, f"{name}: cannot be read ({exc.strerror or exc})")
        raise NotFound(f"{name}: cannot be read ({exc.strerror or exc})", code="file_not_found") from None
    stream = io.TextIOWrapper(io.BufferedReader(raw, buffer_size=1 << 20), encoding="utf-8-sig", newline="")
    builder = LineBuilder(batch_id=batch.pk, unit_modalities=unit_modalities())
    try:
        with transaction.atomic():
            records = parser(stream, builder=builder)
            counts = _write_records(batch, records, byte_counter=lambda: raw.bytes_read, progress=progress)
            return _batch_finish(batch, counts)
    except SourceFormatError as exc:
        return _batch_refuse(batch, f"{name}: {exc.message}")
    except UnicodeDecodeError as exc:
        return _batch_refuse(batch, f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except BaseException as exc:  # a worker's time limit too: the batch must not stay running
        _batch_fail(batch, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        stream.close()
        cache.delete(usage_progress_key(batch.pk))


def usage_upload_queue(*, uploaded_file, source_format: str, actor) -> UsageBatch:
    """Keep an uploaded source and queue its ingestion; the batch shows progress.

    The file is kept under a name of our own (the batch's id and the upload's
    suffix): a client's name may be longer than the file system allows, or hold
    anything. Should keeping or queueing fail, the batch is failed, never left
    pending (a pending batch tells the rating a load is under way).
    """
    if actor is not None:  # None: an operator on the server (a command, the demo)
        access_require(actor, Permission.FEED_LEDGER, doing="upload usage")
    if source_format not in PARSERS:
        raise ValidationFailed(
            f"unknown format {source_format!r}; formats are {', '.join(FILE_FORMATS)}", code="unknown_format"
        )
    name = Path(uploaded_file.name or "upload").name or "upload"
    batch = usage_batch_create(
        source_format=source_format, source_name=name, created_by=actor, bytes_total=uploaded_file.size
    )
    try:
        folder = Path(settings.MEDIA_ROOT) / "usage-uploads"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"batch-{batch.pk}{_kept_suffix(name)}"
        with open(path, "wb") as out:
            for chunk in uploaded_file.chunks():
                out.write(chunk)
        task_queue_on_commit("allocation.tasks.usage_batch_ingest_task", batch.pk, str(path))
    except BaseException as exc:
        batch.refresh_from_db(fields=["status"])
        if batch.status == UsageBatchStatus.PENDING:  # an eager task that ran has its own status
            _batch_fail(batch, f"the upload could not be kept or queued: {type(exc).__name__}: {exc}")
        raise
    return batch


def _kept_suffix(name: str) -> str:
    """The upload's suffix (.csv, .jsonl, .json) if it is a plain short one, for whoever
    opens the kept file; nothing else of a client's name reaches the file system."""
    suffix = Path(name).suffix.lower()
    return suffix if len(suffix) <= 8 and suffix[1:].isascii() and suffix[1:].isalnum() else ""


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
    """Ingest a gateway's batch of events (our schema) with an answer per event.

    All or nothing, like a file: the events' lines, the rejections and the batch's
    counts commit together, or the batch is failed and nothing is written. `actor` is
    who sends them (a user or the gateway's service account); None is an operator on
    the server (a command, the demo).
    """
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
        event_id = event.get("event_id") if isinstance(event, Mapping) else None
        event_id = storable_text(event_id, 255) if isinstance(event_id, str) else ""
        try:
            if not isinstance(event, Mapping):
                raise RowError("(event)", "not a JSON object")
            require_nesting(event, "(event)")
            records.append(ParsedRecord(index, event_lines(event, line=index, builder=builder)))
            results[index] = EventResult(index, event_id, "accepted")
        except RowError as exc:
            records.append(RejectedRecord(index, exc.field, exc.reason, record_text(event)))
            results[index] = EventResult(index, event_id, "rejected", exc.field, exc.reason)
    try:
        with transaction.atomic():
            counts = _write_records(batch, records, per_record_results=True)
            batch = _batch_finish(batch, counts)
    except BaseException as exc:
        _batch_fail(batch, f"{type(exc).__name__}: {exc}")
        raise
    for index in counts.duplicate_lines:
        results[index] = EventResult(index, results[index].event_id, "duplicate")
    return batch, [results[i] for i in sorted(results)]


def _batch_start(batch: UsageBatch) -> None:
    """Mark the batch running, committed before its load begins, so pages and the rating
    see it loading; the counts of an earlier attempt start over."""
    with transaction.atomic():
        batch.rejections.all().delete()
        batch.status = UsageBatchStatus.RUNNING
        batch.started_at = timezone.now()
        batch.rows_read = batch.inserted = batch.duplicate = batch.rejected = batch.lines_inserted = 0
        batch.restated = batch.bytes_read = 0
        batch.error = ""
        batch.save()


@dataclass(slots=True)
class _Counts:
    """A load's counts so far; written to the batch once, with its status, at the end."""

    rows_read: int = 0
    inserted: int = 0
    duplicate: int = 0
    rejected: int = 0
    lines_inserted: int = 0
    restated: int = 0
    bytes_read: int = 0
    duplicate_lines: set[int] = field(default_factory=set)

    def as_fields(self) -> dict[str, int]:
        return {
            "rows_read": self.rows_read,
            "inserted": self.inserted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "lines_inserted": self.lines_inserted,
            "restated": self.restated,
            "bytes_read": self.bytes_read,
        }


def _batch_finish(batch: UsageBatch, counts: _Counts) -> UsageBatch:
    """Complete the batch with its counts, in the load's transaction."""
    fields = counts.as_fields()
    if batch.bytes_total is not None:
        fields["bytes_read"] = batch.bytes_total
    UsageBatch.objects.filter(pk=batch.pk).update(
        **fields, status=UsageBatchStatus.COMPLETED, finished_at=timezone.now(), error=""
    )
    batch.refresh_from_db()
    return batch


def _batch_refuse(batch: UsageBatch, message: str) -> UsageBatch:
    UsageBatch.objects.filter(pk=batch.pk).update(
        status=UsageBatchStatus.REFUSED, error=storable_text(message, 5000), finished_at=timezone.now()
    )
    batch.refresh_from_db()
    return batch


def _batch_fail(batch: UsageBatch, message: str) -> None:
    """Mark the batch failed, with no counts: its load wrote nothing."""
    try:
        UsageBatch.objects.filter(pk=batch.pk).update(
            status=UsageBatchStatus.FAILED,
            error=storable_text(message, 5000),
            finished_at=timezone.now(),
            rows_read=0,
            inserted=0,
            duplicate=0,
            rejected=0,
            lines_inserted=0,
            restated=0,
        )
    except Exception:  # the connection itself may be what failed; the original error matters more
        logger.exception("usage batch %s: could not be marked failed", batch.pk)
    batch.status = UsageBatchStatus.FAILED


def _write_records(
    batch: UsageBatch,
    records: Iterable[ParsedRecord | RejectedRecord],
    *,
    byte_counter: Callable[[], int] | None = None,
    progress: ProgressCallback | None = None,
    per_record_results: bool = False,
) -> _Counts:
    """Write records in chunks, within the caller's transaction; returns the counts.

    A chunk's parsed records stream into the writer as the parser yields them,
    so the database loads them while the parser reads on (a COPY runs in the
    server's process, on another core); its rejected records are set aside
    and saved with it. After each chunk the counts go to the progress channel.
    """
    writer: LedgerWriter
    if batch.source_format in BUCKET_SOURCE_FORMATS:
        writer = BucketLedgerWriter(batch_id=batch.pk)
    else:
        writer = ledger_writer(per_record_results=per_record_results)
    chunk_rows = settings.CHARGEBACK_INGEST_CHUNK_ROWS
    source = iter(records)
    rejected: list[RejectedRecord] = []
    counts = _Counts()
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
        result = writer.write(parsed)
        if next(parsed, None) is not None:
            raise RuntimeError(f"{type(writer).__name__} left records of a chunk unwritten")
        UsageRejection.objects.bulk_create(
            [
                UsageRejection(
                    batch=batch,
                    line=r.line,
                    field=storable_text(r.field, 200),
                    reason=storable_text(r.reason, 500),
                    raw=storable_text(r.raw, 2000),
                )
                for r in rejected
            ],
            batch_size=1000,
        )
        counts.rows_read += read
        counts.inserted += result.inserted
        counts.duplicate += result.duplicate
        counts.rejected += len(rejected)
        counts.lines_inserted += result.lines_inserted
        counts.restated = getattr(writer, "restated", 0)
        if byte_counter is not None:
            counts.bytes_read = byte_counter()
        if result.duplicate_lines:
            counts.duplicate_lines.update(result.duplicate_lines)
        rejected.clear()
        _progress_publish(batch, counts, progress)
        if read < chunk_rows:  # the source is exhausted
            return counts


def _progress_publish(batch: UsageBatch, counts: _Counts, progress: ProgressCallback | None) -> None:
    """The counts so far, to the cache (pages and the API read them while the load's
    transaction is open) and to the caller's callback, on the batch as given."""
    fields = counts.as_fields()
    cache.set(usage_progress_key(batch.pk), fields, USAGE_PROGRESS_SECONDS)
    if progress is not None:
        for name, value in fields.items():
            setattr(batch, name, value)
        progress(batch)
