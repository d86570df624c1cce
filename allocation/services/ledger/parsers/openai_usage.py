"""Pages of OpenAI's /v1/organization/usage/* endpoints.

Completions nest their counts: `input_tokens` includes cached and cache-write
tokens, and each of uncached/cached input splits into text, audio and image.
We store the disjoint leaves only, and refuse a result whose leaves do not add
up to its totals (a sign of a changed API, not something to guess about).
"""

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import TextIO

from ..records import (
    LineBuilder,
    ParsedRecord,
    RejectedRecord,
    RowError,
    nonzero_leaves,
    record_text,
    require_nesting,
    utc_from_unix,
)
from .json_documents import UnreadableLine, group_text, usage_buckets, whole_number

__all__ = ["parse_openai_usage"]

PROVIDER = "openai"
_WHAT = "OpenAI usage API pages ({'object': 'page', 'data': [buckets with start_time, end_time, results]})"
_GROUP_FIELDS = (
    "project_id",
    "user_id",
    "api_key_id",
    "model",
    "batch",
    "service_tier",
    "size",
    "source",
    "context_level",
    "vector_store_id",
)


# The widest bucket a usage page holds is a day; a month is the most we take.
_LONGEST_BUCKET = 31 * 86400


def _kind(result: dict) -> str:
    obj = result.get("object")
    if not isinstance(obj, str) or not obj.startswith("organization.usage."):
        raise RowError("object", f"not an OpenAI usage result: {obj!r}")
    return obj.removeprefix("organization.usage.").removesuffix(".result")


def _completions(r: dict) -> list[tuple[str, int]]:
    n = {
        f: whole_number(r.get(f), f)
        for f in (
            "input_tokens",
            "input_cached_tokens",
            "input_cache_write_tokens",
            "output_tokens",
            "input_audio_tokens",
            "input_cached_audio_tokens",
            "output_audio_tokens",
            "input_image_tokens",
            "input_cached_image_tokens",
            "output_image_tokens",
        )
    }
    if r.get("input_tokens") is None:
        raise RowError("input_tokens", "missing")
    if r.get("output_tokens") is None:
        raise RowError("output_tokens", "missing")
    uncached = (
        whole_number(r["input_uncached_tokens"], "input_uncached_tokens")
        if r.get("input_uncached_tokens") is not None
        else n["input_tokens"] - n["input_cached_tokens"] - n["input_cache_write_tokens"]
    )
    text_in = (
        whole_number(r["input_text_tokens"], "input_text_tokens")
        if r.get("input_text_tokens") is not None
        else uncached - n["input_audio_tokens"] - n["input_image_tokens"]
    )
    cached_text = (
        whole_number(r["input_cached_text_tokens"], "input_cached_text_tokens")
        if r.get("input_cached_text_tokens") is not None
        else n["input_cached_tokens"] - n["input_cached_audio_tokens"] - n["input_cached_image_tokens"]
    )
    text_out = (
        whole_number(r["output_text_tokens"], "output_text_tokens")
        if r.get("output_text_tokens") is not None
        else n["output_tokens"] - n["output_audio_tokens"] - n["output_image_tokens"]
    )
    leaves = [
        ("input_token", text_in),
        ("cached_input_token", cached_text),
        ("cache_write_token", n["input_cache_write_tokens"]),
        ("audio_input_token", n["input_audio_tokens"]),
        ("cached_audio_input_token", n["input_cached_audio_tokens"]),
        ("image_input_token", n["input_image_tokens"]),
        ("cached_image_input_token", n["input_cached_image_tokens"]),
        ("output_token", text_out),
        ("audio_output_token", n["output_audio_tokens"]),
        ("image_output_token", n["output_image_tokens"]),
    ]
    for unit, quantity in leaves:
        if quantity < 0:
            raise RowError(
                "input_tokens" if "output" not in unit else "output_tokens",
                f"its parts exceed the total ({unit} would be {quantity})",
            )
    inputs = sum(q for u, q in leaves if u not in {"output_token", "audio_output_token", "image_output_token"})
    outputs = text_out + n["output_audio_tokens"] + n["output_image_tokens"]
    if inputs != n["input_tokens"]:
        raise RowError(
            "input_tokens", f"{n['input_tokens']} but its uncached, cached and cache-write parts add to {inputs}"
        )
    if outputs != n["output_tokens"]:
        raise RowError("output_tokens", f"{n['output_tokens']} but its text, audio and image parts add to {outputs}")
    return leaves


def _required(r: dict, field: str) -> int:
    if r.get(field) is None:
        raise RowError(field, "missing")
    return whole_number(r[field], field)


def _lines_of(kind: str, r: dict, seconds: int) -> list[tuple[str, Decimal | int, str]]:
    """(unit, quantity, tier) leaves of one result."""
    if kind == "completions":
        return [(u, q, "") for u, q in _completions(r)]
    if kind == "embeddings":
        return [("embedding_token", _required(r, "input_tokens"), "")]
    if kind == "moderations":
        return [("input_token", _required(r, "input_tokens"), "")]
    if kind == "images":
        return [("image", _required(r, "images"), r.get("size") or "")]
    if kind == "audio_speeches":
        return [("character", _required(r, "characters"), "")]
    if kind == "audio_transcriptions":
        return [("transcription_second", _required(r, "seconds"), "")]
    if kind == "vector_stores":
        # Billed per GB (10^9 bytes) held per day: bytes over the bucket's span.
        gb_days = Decimal(_required(r, "usage_bytes")) / Decimal(10**9) * Decimal(seconds) / Decimal(86400)
        try:
            return [("vector_gb_day", gb_days.quantize(Decimal("0.000000001")), "")]
        except InvalidOperation:  # more digits than a quantity holds
            raise RowError("usage_bytes", f"too large: {gb_days:.3e} GB-days") from None
    if kind in {"web_searches", "web_search_calls"}:
        # The context level is part of the bucket's identity (event id), not a price tier.
        return [("tool_call", _required(r, "num_requests"), "web_search")]
    if kind in {"file_searches", "file_search_calls"}:
        return [("tool_call", _required(r, "num_requests"), "file_search")]
    if kind == "code_interpreter_sessions":
        return [("container_session", _required(r, "num_sessions"), "")]
    raise RowError("object", f"unsupported OpenAI usage result 'organization.usage.{kind}.result'")


def parse_openai_usage(stream: TextIO, *, builder: LineBuilder) -> Iterator[ParsedRecord | RejectedRecord]:
    record = 0
    for where, bucket in usage_buckets(
        stream, what=_WHAT, time_key="start_time", other_time_key="starting_at", other_format="anthropic-usage"
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
                start = whole_number(bucket.get("start_time"), "start_time")
                end = (
                    whole_number(bucket.get("end_time"), "end_time")
                    if bucket.get("end_time") is not None
                    else start + 86400
                )
                if not 0 < end - start <= _LONGEST_BUCKET:
                    raise RowError("end_time", f"{end} is not within {_LONGEST_BUCKET // 86400} days after start_time")
                kind = _kind(result)
                occurred_at = utc_from_unix(start, "start_time")
                group = group_text(result, _GROUP_FIELDS)
                event_id = f"openai-usage:{kind}:{start}:{end}:{group}"
                tier = "batch" if result.get("batch") is True else (result.get("service_tier") or "")
                tags = {
                    "project": result.get("project_id"),
                    "user": result.get("user_id"),
                    "api_key": result.get("api_key_id"),
                }
                leaves = _lines_of(kind, result, end - start)
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
                        service_tier=tier,
                        tier=unit_tier,
                        tags=tags,
                        time_field="start_time",
                    )
                    for unit, quantity, unit_tier in nonzero
                ]
            except RowError as exc:
                field = exc.field if exc.field.startswith("(") else f"{path}.{exc.field}"
                yield RejectedRecord(record, field, exc.reason, raw)
                continue
            yield ParsedRecord(record, lines)
