"""OpenTelemetry GenAI spans in OTLP/JSON (one export request, a list, or JSON lines).

Per the semantic conventions, `gen_ai.usage.input_tokens` includes cache reads
and cache writes, and `output_tokens` includes reasoning: we store the
disjoint parts. Tags come from resource attributes, overridden by the span's.
Spans with no `gen_ai.*` attribute are other work of the trace (HTTP, DB) and
are not usage records; a GenAI span without usage counts is rejected.
"""

from collections.abc import Iterator
from decimal import Decimal
from typing import TextIO

from ..records import (
    BIGINT_LIMIT,
    LineBuilder,
    ParsedRecord,
    RejectedRecord,
    RowError,
    SourceFormatError,
    nonzero_leaves,
    record_text,
    require_nesting,
    utc_from_unix,
)
from .json_documents import UnreadableLine, json_documents, whole_number

__all__ = ["parse_otel", "TAG_ATTRIBUTES"]

_WHAT = "OTLP/JSON trace export ({'resourceSpans': [...]})"
# Our tag <- attribute keys, first present wins (span attributes before resource).
TAG_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "team": ("chargeback.team", "team", "app.team"),
    "feature": ("chargeback.feature", "feature", "app.feature"),
    "environment": ("deployment.environment.name", "deployment.environment", "chargeback.environment", "environment"),
    "tenant": ("chargeback.tenant", "tenant.id", "tenant"),
    "user": ("user.id", "enduser.id"),
    "session_id": ("session.id", "gen_ai.conversation.id"),
    "request_id": ("gen_ai.response.id",),
    "caller": ("chargeback.caller", "caller"),
    "project": ("openai.project", "chargeback.project"),
}


def _value(value: object) -> object:
    if not isinstance(value, dict):
        return None
    for kind in ("stringValue", "intValue", "doubleValue", "boolValue"):
        if kind in value:
            return value[kind]
    if isinstance(value.get("arrayValue"), dict):
        return [_value(item) for item in value["arrayValue"].get("values") or []]
    return None


def _outcome(span: dict, attrs: dict) -> str:
    """`moderated` when a finish reason is the content filter, `failed` when the span's
    status is an error (or it names an `error.type`), else empty: a shared service
    charges its callers for neither."""
    reasons = attrs.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, str):
        reasons = [reasons]
    if isinstance(reasons, list) and "content_filter" in reasons:
        return "moderated"
    status = span.get("status")
    code = status.get("code") if isinstance(status, dict) else None
    if code in (2, "2", "STATUS_CODE_ERROR") or attrs.get("error.type"):
        return "failed"
    return ""


def _attributes(items: object) -> dict[str, object]:
    if not isinstance(items, list):
        return {}
    return {a["key"]: _value(a.get("value")) for a in items if isinstance(a, dict) and isinstance(a.get("key"), str)}


def _first(attributes: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        value = attributes.get(key)
        if value not in (None, ""):
            return str(value)
    return ""


def _spans(stream: TextIO) -> list[tuple[int, str, object, object]]:
    """(file line, path, resource attributes as sent, span) of every span; a part
    that is not what OTLP nests there is a span of its own, an UnreadableLine."""
    spans: list[tuple[int, str, object, object]] = []
    for line, document in json_documents(stream, what=_WHAT):
        if isinstance(document, UnreadableLine):
            spans.append((line, "(line)", None, document))
            continue
        if not isinstance(document, dict) or not isinstance(document.get("resourceSpans"), list):
            raise SourceFormatError(f"line {line}: no 'resourceSpans' list: expected {_WHAT}")
        for r, resource_spans in enumerate(document["resourceSpans"]):
            path = f"resourceSpans[{r}]"
            if not isinstance(resource_spans, dict):
                spans.append((line, path, None, UnreadableLine("not an object")))
                continue
            resource = resource_spans.get("resource")
            attributes = resource.get("attributes") if isinstance(resource, dict) else None
            scopes = resource_spans.get("scopeSpans") or resource_spans.get("instrumentationLibrarySpans") or []
            if not isinstance(scopes, list):
                spans.append((line, f"{path}.scopeSpans", None, UnreadableLine("not a list")))
                continue
            for s, scope in enumerate(scopes):
                scope_spans = scope.get("spans") if isinstance(scope, dict) else None
                if not isinstance(scope_spans, list | None):
                    spans.append((line, f"{path}.scopeSpans[{s}].spans", None, UnreadableLine("not a list")))
                    continue
                for i, span in enumerate(scope_spans or []):
                    spans.append((line, f"{path}.scopeSpans[{s}].spans[{i}]", attributes, span))
    return spans


def _leaves(attrs: dict, operation: str) -> tuple[list[tuple[str, int]], int]:
    def count(*keys: str) -> int | None:
        for key in keys:
            if attrs.get(key) is not None:
                return whole_number(attrs[key], key)
        return None

    input_tokens = count("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
    output_tokens = count("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
    if input_tokens is None and output_tokens is None:
        raise RowError("gen_ai.usage.input_tokens", "missing: a GenAI span without usage counts")
    input_tokens = input_tokens or 0
    output_tokens = output_tokens or 0
    if operation == "embeddings":
        return [("embedding_token", input_tokens)], input_tokens
    cache_read = count("gen_ai.usage.cache_read.input_tokens") or 0
    cache_write = count("gen_ai.usage.cache_creation.input_tokens") or 0
    reasoning = count("gen_ai.usage.reasoning.output_tokens") or 0
    if cache_read + cache_write > input_tokens:
        raise RowError(
            "gen_ai.usage.input_tokens",
            f"{input_tokens} is less than its cache reads ({cache_read}) and writes ({cache_write}),"
            " which the conventions count inside it",
        )
    if reasoning > output_tokens:
        raise RowError("gen_ai.usage.output_tokens", f"{output_tokens} is less than its reasoning tokens ({reasoning})")
    return [
        ("input_token", input_tokens - cache_read - cache_write),
        ("cached_input_token", cache_read),
        ("cache_write_token", cache_write),
        ("output_token", output_tokens - reasoning),
        ("reasoning_token", reasoning),
    ], input_tokens


def parse_otel(stream: TextIO, *, builder: LineBuilder) -> Iterator[ParsedRecord | RejectedRecord]:
    record = 0
    for line, path, resource_attributes, span in _spans(stream):
        where = f"line {line}: {path}" if line > 1 else path
        if isinstance(span, UnreadableLine):
            record += 1
            yield RejectedRecord(record, where, span.reason, "")
            continue
        try:
            # Nesting is checked before attributes are read: _value recurses.
            require_nesting(resource_attributes, "resource.attributes")
            require_nesting(span, "(span)")
            resource = _attributes(resource_attributes)
            attrs = {**resource, **_attributes(span.get("attributes"))} if isinstance(span, dict) else {}
        except RowError as exc:
            record += 1
            yield RejectedRecord(record, f"{where}.{exc.field}", exc.reason, record_text(span))
            continue
        if not any(isinstance(key, str) and key.startswith("gen_ai.") for key in attrs):
            continue
        record += 1
        raw = record_text(span)
        try:
            provider = _first(attrs, ("gen_ai.provider.name", "gen_ai.system"))
            if not provider:
                raise RowError("gen_ai.provider.name", "missing")
            model = _first(attrs, ("gen_ai.response.model", "gen_ai.request.model"))
            if not model:
                raise RowError("gen_ai.request.model", "missing")
            start = span.get("startTimeUnixNano")
            nanos = whole_number(start, "startTimeUnixNano")
            if not nanos:
                raise RowError("startTimeUnixNano", "missing")
            if nanos >= BIGINT_LIMIT:  # OTLP's fixed64; past it is no time at all
                raise RowError("startTimeUnixNano", f"out of range: {nanos}")
            occurred_at = utc_from_unix(
                nanos // 1_000_000_000, "startTimeUnixNano", microseconds=(nanos % 1_000_000_000) // 1000
            )
            trace_id, span_id = span.get("traceId") or "", span.get("spanId") or ""
            if not span_id:
                raise RowError("spanId", "missing")
            if not isinstance(trace_id, str) or not isinstance(span_id, str):
                raise RowError("spanId" if not isinstance(span_id, str) else "traceId", "expected text")
            tags = {tag: _first(attrs, keys) for tag, keys in TAG_ATTRIBUTES.items()}
            tags["trace_id"] = str(trace_id)
            tags["outcome"] = _outcome(span, attrs)
            leaves, context_tokens = _leaves(attrs, _first(attrs, ("gen_ai.operation.name",)))
            service_tier = _first(
                attrs,
                (
                    "openai.response.service_tier",
                    "openai.request.service_tier",
                    "gen_ai.openai.response.service_tier",
                    "gen_ai.openai.request.service_tier",
                ),
            )
            nonzero = nonzero_leaves(leaves)
            lines = [
                builder.line(
                    source_line=record,
                    event_id=f"otel:{trace_id}:{span_id}",
                    occurred_at=occurred_at,
                    provider=provider,
                    model=model,
                    unit=unit,
                    quantity=Decimal(quantity),
                    service_tier=service_tier,
                    context_tokens=context_tokens,
                    tags=tags,
                    time_field="startTimeUnixNano",
                )
                for unit, quantity in nonzero
            ]
        except RowError as exc:
            yield RejectedRecord(record, f"{where}.{exc.field}", exc.reason, raw)
            continue
        yield ParsedRecord(record, lines)
