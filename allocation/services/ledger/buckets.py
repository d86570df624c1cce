"""Provider usage buckets in the ledger: a bucket exported again with other figures
is restated, append-only.

OpenAI's and Anthropic's usage reports are time buckets (one day of one model,
project, key ...), keyed by the bucket's event id. The same bucket read again
with the same figures is a duplicate. With other figures (today's partial day
exported at noon, then the whole day the next morning) it is a restatement:
the batch that brings the new figures writes

* a reversal line for each line of the bucket's current version (the same
  line, its quantity negated, `restatement` -1), and
* the new figures as replacement lines (`restatement` 1),

and records the version (UsageBucketVersion). Every sum over the ledger then
reads the latest figures, never the sum of both and never only the first;
nothing written before is changed, so a rating that kept the sums of earlier
batches only adds the new batch's lines. Figures already seen in any version of
the bucket (an older export read again) are a duplicate, so reading a folder of
exports again in any order changes nothing.

Bucket files are small (a month is a few thousand buckets), so this writer uses
the ORM on both databases; the COPY path is for the event formats' millions.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import blake2b

from django.db import connection

from allocation.choices import UsageLineRestatement
from allocation.models import UsageBucketVersion, UsageLine

from .records import LEDGER_COLUMNS, ParsedRecord, record_figures
from .writer import ChunkResult, LedgerWriter

__all__ = ["BucketLedgerWriter", "bucket_key"]

_PROVIDER, _EVENT_ID = LEDGER_COLUMNS.index("provider"), LEDGER_COLUMNS.index("event_id")
_LOOKUP_SIZE = 500  # keys per IN (...): under SQLite's bound-parameter limit
# pg_advisory_xact_lock key: bucket loads run one at a time, so two loads restating the
# same bucket never both write its next version (the second waits, then sees the first's).
_LOCK_KEY = (0x6C656467, 0x62756B74)


def bucket_key(provider: str, event_id: str) -> uuid.UUID:
    """The key of a bucket: its provider and event id, hashed (frozen in migration 0011)."""
    name = f"{provider}\x1f{event_id}".encode("utf-8", "surrogatepass")
    return uuid.UUID(bytes=blake2b(name, digest_size=16).digest())


def _derived_key(key: str, version: int, kind: str) -> uuid.UUID:
    """A line key for version `version` of a bucket, from the key of the line it reverses or
    of the original line of its unit: distinct per version and kind, the same on a re-run."""
    return uuid.UUID(bytes=blake2b(f"{key}\x1f{version}\x1f{kind}".encode(), digest_size=16).digest())


@dataclass(slots=True)
class _Bucket:
    version: int = 0
    line_keys: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


class BucketLedgerWriter(LedgerWriter):
    """Writes provider bucket records: new, duplicate (figures seen before) or restated."""

    def __init__(self, *, batch_id: int):
        self.batch_id = batch_id
        self.restated = 0
        self._locked = False

    def write(self, records: Iterable[ParsedRecord]) -> ChunkResult:
        records = list(records)
        if not records:
            return ChunkResult(0, 0, 0, frozenset())
        self._lock()
        buckets = self._buckets({bucket_key(r.lines[0][_PROVIDER], r.lines[0][_EVENT_ID]) for r in records})
        written: dict[str, UsageLine] = {}  # this chunk's lines, by key, for a bucket restated within it
        versions: list[UsageBucketVersion] = []
        duplicates: set[int] = set()
        inserted = 0
        for record in records:
            key = bucket_key(record.lines[0][_PROVIDER], record.lines[0][_EVENT_ID])
            figures = record_figures(record.lines)
            bucket = buckets.setdefault(key, _Bucket())
            if figures in bucket.seen:
                duplicates.add(record.line)
                continue
            inserted += 1
            version = bucket.version + 1
            new_lines = [_line(row) for row in record.lines]
            if version > 1:
                self.restated += 1
                for line in new_lines:
                    line.event_key = _derived_key(line.event_key.hex, version, "replacement")
                    line.restatement = UsageLineRestatement.REPLACEMENT
                reversals = [
                    _reversal(line, batch_id=self.batch_id, source_line=record.line, version=version)
                    for line in self._current_lines(bucket.line_keys, written)
                ]
                new_lines = reversals + new_lines
            current = [line for line in new_lines if line.restatement != UsageLineRestatement.REVERSAL]
            for line in new_lines:
                written[line.event_key.hex] = line
            versions.append(
                UsageBucketVersion(
                    bucket_key=key,
                    version=version,
                    figures=figures,
                    line_keys=[line.event_key.hex for line in current],
                    batch_id=self.batch_id,
                    source_line=record.line,
                )
            )
            bucket.version, bucket.line_keys = version, [line.event_key.hex for line in current]
            bucket.seen.add(figures)
        UsageLine.objects.bulk_create(written.values(), batch_size=1000)
        UsageBucketVersion.objects.bulk_create(versions, batch_size=1000)
        return ChunkResult(inserted, len(records) - inserted, len(written), frozenset(duplicates))

    def _lock(self) -> None:
        if connection.vendor == "postgresql" and not self._locked:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", _LOCK_KEY)
            self._locked = True

    @staticmethod
    def _buckets(keys: set[uuid.UUID]) -> dict[uuid.UUID, _Bucket]:
        """The known versions of these buckets: the figures each has had, and its current lines."""
        buckets: dict[uuid.UUID, _Bucket] = {}
        keys = sorted(keys)
        for start in range(0, len(keys), _LOOKUP_SIZE):
            found = UsageBucketVersion.objects.filter(bucket_key__in=keys[start : start + _LOOKUP_SIZE])
            for version in found.order_by("bucket_key", "version"):
                bucket = buckets.setdefault(version.bucket_key, _Bucket())
                bucket.version, bucket.line_keys = version.version, version.line_keys
                bucket.seen.add(version.figures)
        return buckets

    @staticmethod
    def _current_lines(keys: list[str], written: dict[str, UsageLine]) -> list[UsageLine]:
        """The lines holding a bucket's current figures: as the ledger has them (or as this
        chunk wrote them), so the reversal cancels them exactly."""
        lines = [written[k] for k in keys if k in written]
        missing = [uuid.UUID(hex=k) for k in keys if k not in written]
        if missing:
            lines += UsageLine.objects.filter(event_key__in=missing).order_by("event_key")
        return lines


def _line(row: tuple) -> UsageLine:
    values = dict(zip(LEDGER_COLUMNS, row, strict=True))
    values["event_key"] = uuid.UUID(hex=values["event_key"])
    return UsageLine(**values)


def _reversal(line: UsageLine, *, batch_id: int, source_line: int, version: int) -> UsageLine:
    """`line` negated, in the batch that restates its bucket: the same tags, time and
    prices, so it cancels the line in every sum, by any grouping."""
    values = {f.attname: getattr(line, f.attname) for f in UsageLine._meta.concrete_fields}
    values.update(
        event_key=_derived_key(line.event_key.hex, version, "reversal"),
        batch_id=batch_id,
        source_line=source_line,
        quantity=-line.quantity,
        restatement=UsageLineRestatement.REVERSAL,
    )
    return UsageLine(**values)
