"""Pages of Anthropic's /v1/organizations/usage_report/messages.

Unlike OpenAI, `uncached_input_tokens` already excludes cache reads and
writes, and cache writes come as 5-minute and 1-hour kinds (priced apart), so
each count maps to its own unit as given.
"""

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import TextIO

from ..records import (
    LineBuilder,
    ParsedRecord,
    RejectedRecord,
    RowError,
    nonzero_leaves,
    parse_occurred_at,
    record_text,
    require_nesting,
)
from .json_documents import UnreadableLine, group_text, usage_buckets, whole_number

__all__ = ["parse_anthropic_usage"]

PROVIDER = "anthropic"
_WHAT = "Anthropic usage report pages ({'data': [buckets with starting_at, ending_at, results]})"
_GROUP_FIELDS = (
    "workspace_id",
    "api_key_id",
    "account_id",
    "service_account_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
)


def _leaves(r: dict) -> list[tuple[str, int, str]]:
    cache_creation = r.get("cache_creation") or {}
    server_tools = r.get("server_tool_use") or {}
    if not isinstance(cache_creation, dict):
        raise RowError("cache_creation", "expected an object")
    if not isinstance(server_tools, dict):
        raise RowError("server_tool_use", "expected an object")
    if r.get("uncached_input_tokens") is None and r.get("output_tokens") is None:
        raise RowError("uncached_input_tokens", "missing (and no output_tokens): not a messages usage result")
    return [
        ("input_token", whole_number(r.get("uncached_input_tokens"), "uncached_input_tokens"), ""),
        ("cached_input_token", whole_number(r.get("cache_read_input_tokens"), "cache_read_input_tokens"), ""),
        (
            "cache_write_token",
            whole_number(cache_creation.get("ephemeral_5m_input_tokens"), "cache_creation.ephemeral_5m_input_tokens"),
            "",
        ),
        (
            "cache_write_1h_token",
            whole_number(cache_creation.get("ephemeral_1h_input_tokens"), "cache_creation.ephemeral_1h_input_tokens"),
            "",
        ),
        ("output_token", whole_number(r.get("output_tokens"), "output_tokens"), ""),
        (
            "tool_call",
            whole_number(server_tools.get("web_search_requests"), "server_tool_use.web_search_requests"),
            "web_search",
        ),
    ]


def _stamp(moment: datetime | None) -> str:
    if moment is None:
        return "None"  # as the id read when a bucket had no ending_at
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond:06d}" if moment.microsecond else "") + "Z"


def parse_anthropic_usage(stream: TextIO, *, builder: LineBuilder) -> Iterator[ParsedRecord | RejectedRecord]:
    record = 0
    for where, bucket in usage_buckets(
        stream, what=_WHAT, time_key="starting_at", other_time_key="start_time", other_format="openai-usage"
    ):
        if isinstance(bucket, UnreadableLine):
            record += 1
            yield RejectedRecord(record, f"({where})", bucket.reason, "")
            continue
        for i, result in enumerate(bucket["results"]):
            record += 1
            path = f"{where}.results[{i}]"
            raw = record_text(result)
            try:
                if not isinstance(result, dict):
                    raise RowError("(result)", "not an object")
                require_nesting(result, "(result)")
                occurred_at = parse_occurred_at(bucket.get("starting_at"), "starting_at")
                ending = bucket.get("ending_at")
                ends = parse_occurred_at(ending, "ending_at") if ending is not None else None
                if ends is not None and ends <= occurred_at:
                    raise RowError("ending_at", "not after starting_at")
                group = group_text(result, _GROUP_FIELDS)
                # The bucket's times in the one spelling Anthropic uses (2025-08-01T00:00:00Z),
                # so an export writing them with another offset names the same bucket.
                event_id = f"anthropic-usage:{_stamp(occurred_at)}:{_stamp(ends)}:{group}"
                tags = {
                    "project": result.get("workspace_id"),
                    "api_key": result.get("api_key_id"),
                    "user": result.get("account_id") or result.get("service_account_id"),
                }
                leaves = _leaves(result)
                nonzero = nonzero_leaves(leaves)
                lines = [
                    builder.line(
                        source_line=record,
                        event_id=event_id,
                        occurred_at=occurred_at,
                        provider=PROVIDER,
                        model=result.get("model") or "",
                        unit=unit,
                        quantity=Decimal(quantity),
                        service_tier=result.get("service_tier") or "",
                        tier=tier,
                        context_band=result.get("context_window") or "",
                        tags=tags,
                        time_field="starting_at",
                    )
                    for unit, quantity, tier in nonzero
                ]
            except RowError as exc:
                field = exc.field if exc.field.startswith("(") else f"{path}.{exc.field}"
                yield RejectedRecord(record, field, exc.reason, raw)
                continue
            yield ParsedRecord(record, lines)
