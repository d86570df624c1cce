"""The demo's usage: its workloads, the events each month and their ingestion.

Usage is generated with a seeded `random.Random` per month, so the same month
always yields the same events with the same ids; a second run is all duplicates
and inserts nothing. Request sizes (context and generated tokens) are drawn from
real Azure LLM inference traces shipped in `data/`. The events go through the
ingestion service, like a gateway's would.

Every constant, seed and draw here fixes the demo's events (and so its invoices
and allocation runs): change one and every figure of the demo changes.
"""

import csv
import datetime
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from allocation.models import UsageBatch
from allocation.services.ledger import usage_ingest_events
from chargeback.demo.organization import CORPUS_OWNERS, DEMO_DATA, PRODUCT_TEAMS, TENANTS

__all__ = [
    "DEMO_SEED",
    "TRACE_FILES",
    "WORKLOADS",
    "Workload",
    "demo_month_events",
    "demo_month_ingest",
    "demo_months",
]

TRACE_FILES = {
    "conv": DEMO_DATA / "AzureLLMInferenceTrace_conv_2023.csv",
    "code": DEMO_DATA / "AzureLLMInferenceTrace_code_2023.csv",
}
DEMO_SEED = 20240601
SOURCE_NAME = "demo"
# Events per ingestion call: one batch each, and the size of one write.
CHUNK_EVENTS = 5000
# Usage grows month over month, as AI adoption does.
MONTHLY_GROWTH = 1.12

# (provider, model, weight) choices, per family of calls.
OPENAI_CHAT = (("openai", "gpt-4o-mini", 5), ("openai", "gpt-4o", 3), ("openai", "gpt-4.1", 2))
ANTHROPIC_CHAT = (("anthropic", "claude-sonnet-4-20250514", 3), ("anthropic", "claude-3-5-haiku-20241022", 2))
MIXED_CHAT = OPENAI_CHAT + ANTHROPIC_CHAT
AGENT_MODELS = (("anthropic", "claude-sonnet-4-20250514", 5), ("anthropic", "claude-opus-4-20250514", 1))
REASONING = (("openai", "o4-mini", 4), ("openai", "o3", 2))
VISION = (("openai", "gpt-4o", 3), ("openai", "gpt-4.1-mini", 2))
IMAGE_GEN = (("openai", "gpt-image-1", 3), ("openai", "dall-e-3", 2))
TRANSCRIBE = (("openai", "whisper-1", 2), ("openai", "gpt-4o-transcribe", 3))
REALTIME = (("openai", "gpt-4o-realtime-preview", 2), ("openai", "gpt-realtime", 3))
EMBED = (("openai", "text-embedding-3-small", 3), ("openai", "text-embedding-3-large", 1))
VECTOR = (("pinecone", "", 1),)
GPU = (("coreweave", "", 3), ("aws", "", 1))

# Environment mixes: customer traffic, internal tools, evaluation and research.
PRODUCT = (("production", 84), ("staging", 5), ("eval", 11))
INTERNAL = (("internal", 90), ("staging", 3), ("eval", 7))
EVAL = (("eval", 100),)
RESEARCH = (("internal", 60), ("eval", 40))
BATCH_JOBS = (("production", 70), ("internal", 30))

IMAGE_TIERS = {
    "gpt-image-1": (("low:1024x1024", 3), ("medium:1024x1024", 4), ("high:1024x1536", 2), ("high:1536x1024", 1)),
    "dall-e-3": (("standard:1024x1024", 4), ("hd:1024x1792", 2), ("hd:1792x1024", 1)),
}
IMAGE_SIZES = ((1024, 768), (1920, 1080), (800, 600), (3024, 4032), (1280, 1280), (512, 512), (2480, 3508))
GPU_TIERS = {"coreweave": "h100-80gb", "aws": "a100-40gb"}
# UTC hours weighted by traffic: the US and European working days overlap at 14-17.
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 2, 3, 5, 7, 9, 10, 10, 11, 13, 14, 14, 13, 11, 9, 7, 5, 4, 3, 2)


@dataclass(frozen=True)
class Workload:
    """How one feature calls AI: the kind of trace, its volume and where it runs."""

    feature: str
    team: str
    kind: str  # chat | rag | agent | reasoning | vision | image | transcription | realtime | search | embed | gpu
    traces: int  # traces a month at scale 1, in the first demo month
    models: tuple[tuple[str, str, int], ...]
    environments: tuple[tuple[str, int], ...] = PRODUCT
    tenant_facing: bool = False
    sizes: str = "conv"  # which Azure trace request sizes come from
    cache_1h: bool = False  # a long-lived prompt kept in Anthropic's 1-hour cache


WORKLOADS: tuple[Workload, ...] = (
    # Customer-facing product features.
    Workload("support-chat", "support-ai", "rag", 650, MIXED_CHAT, tenant_facing=True),
    Workload("ticket-triage", "support-ai", "chat", 360, OPENAI_CHAT, tenant_facing=True),
    Workload("reply-drafts", "support-ai", "chat", 250, ANTHROPIC_CHAT, tenant_facing=True, cache_1h=True),
    Workload("search-answers", "search", "rag", 500, OPENAI_CHAT, tenant_facing=True),
    Workload("semantic-search", "search", "search", 650, EMBED, tenant_facing=True),
    Workload("query-rewrite", "search", "chat", 290, (("openai", "gpt-4o-mini", 1),), tenant_facing=True),
    Workload("reco-explanations", "recommendations", "chat", 180, OPENAI_CHAT, tenant_facing=True),
    Workload("similar-items", "recommendations", "search", 360, EMBED, tenant_facing=True),
    Workload("product-enrichment", "catalog", "chat", 140, ANTHROPIC_CHAT, BATCH_JOBS, tenant_facing=True),
    Workload("image-tagging", "catalog", "vision", 220, VISION, BATCH_JOBS, tenant_facing=True),
    Workload("voice-agent", "voice", "realtime", 300, REALTIME, tenant_facing=True),
    Workload("call-transcripts", "voice", "transcription", 220, TRANSCRIBE, tenant_facing=True),
    Workload("help-search", "help-center", "rag", 220, OPENAI_CHAT, tenant_facing=True),
    Workload("article-writer", "help-center", "chat", 40, ANTHROPIC_CHAT, INTERNAL, cache_1h=True),
    Workload("mobile-assistant", "mobile", "chat", 140, OPENAI_CHAT, tenant_facing=True),
    Workload("onboarding-guide", "onboarding", "rag", 110, ANTHROPIC_CHAT, tenant_facing=True),
    # Engineering.
    Workload("ide-agent", "code-assist", "agent", 190, AGENT_MODELS, INTERNAL, sizes="code", cache_1h=True),
    Workload("code-review", "code-assist", "reasoning", 130, REASONING, INTERNAL, sizes="code"),
    Workload("ci-triage", "devex", "chat", 110, ANTHROPIC_CHAT, INTERNAL, sizes="code"),
    Workload("docs-bot", "devex", "rag", 90, OPENAI_CHAT, INTERNAL),
    Workload("gateway-playground", "ai-gateway", "chat", 90, MIXED_CHAT, INTERNAL),
    Workload("gateway-guardrails", "ai-gateway", "chat", 360, (("openai", "gpt-4o-mini", 1),)),
    Workload("doc-embedding", "data-platform", "embed", 60, EMBED, BATCH_JOBS),
    Workload("fine-tuning", "ml-infra", "gpu", 30, GPU, INTERNAL),
    Workload("model-serving", "ml-infra", "gpu", 40, GPU, BATCH_JOBS),
    Workload("model-training", "research", "gpu", 20, GPU, RESEARCH),
    Workload("research-agents", "research", "agent", 60, AGENT_MODELS + REASONING, RESEARCH, sizes="code"),
    Workload("offline-evals", "eval-lab", "chat", 500, MIXED_CHAT + REASONING, EVAL),
    Workload("red-teaming", "eval-lab", "chat", 120, MIXED_CHAT, EVAL),
    Workload("insight-summaries", "analytics", "chat", 110, OPENAI_CHAT, tenant_facing=True),
    Workload("sql-assistant", "analytics", "reasoning", 70, REASONING, INTERNAL, sizes="code"),
    # Go-to-market.
    Workload("rfp-drafting", "sales-eng", "chat", 40, ANTHROPIC_CHAT, INTERNAL, cache_1h=True),
    Workload("demo-builder", "sales-eng", "chat", 30, OPENAI_CHAT, INTERNAL),
    Workload("call-notes", "revops", "transcription", 120, TRANSCRIBE, INTERNAL),
    Workload("lead-scoring", "revops", "reasoning", 60, REASONING, INTERNAL),
    Workload("campaign-copy", "growth", "chat", 60, MIXED_CHAT, INTERNAL),
    Workload("seo-briefs", "growth", "chat", 40, ANTHROPIC_CHAT, INTERNAL),
    Workload("ad-creative", "creative", "image", 100, IMAGE_GEN, INTERNAL),
    Workload("product-shots", "creative", "image", 60, IMAGE_GEN, INTERNAL),
    Workload("health-scores", "cs-ops", "chat", 90, OPENAI_CHAT, INTERNAL, tenant_facing=True),
    Workload("qbr-decks", "cs-ops", "chat", 30, ANTHROPIC_CHAT, INTERNAL, tenant_facing=True),
    # General and administrative.
    Workload("invoice-extraction", "fin-automation", "vision", 110, VISION, INTERNAL),
    Workload("close-commentary", "fin-automation", "reasoning", 20, REASONING, INTERNAL),
    Workload("contract-review", "legal-ops", "chat", 50, ANTHROPIC_CHAT, INTERNAL, sizes="code", cache_1h=True),
    Workload("policy-qa", "people-ops", "rag", 90, OPENAI_CHAT, INTERNAL),
    Workload("job-descriptions", "people-ops", "chat", 20, OPENAI_CHAT, INTERNAL),
    Workload("helpdesk-bot", "it-helpdesk", "rag", 140, OPENAI_CHAT, INTERNAL),
    Workload("alert-triage", "secops", "reasoning", 90, REASONING, INTERNAL),
    Workload("phishing-analysis", "secops", "vision", 60, VISION, INTERNAL),
)


@cache
def _request_sizes(name: str) -> tuple[tuple[int, int], ...]:
    """(context tokens, generated tokens) of each request in one Azure trace."""
    with open(TRACE_FILES[name], newline="", encoding="utf-8") as handle:
        return tuple((int(row["ContextTokens"]), int(row["GeneratedTokens"])) for row in csv.DictReader(handle))


def demo_months(*, today: datetime.date) -> list[datetime.date]:
    """First days of the three full calendar months before `today`'s month."""
    months = []
    year, month = today.year, today.month
    for _ in range(3):
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        months.append(datetime.date(year, month, 1))
    return months[::-1]


def _weighted(rng: random.Random, choices: Sequence[tuple]) -> tuple:
    """One of `choices`, whose last element is its weight."""
    return rng.choices(choices, weights=[c[-1] for c in choices])[0]


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


class _MonthGenerator:
    """The events of one month; every random draw comes from one seeded generator."""

    def __init__(self, *, month: datetime.date, scale: float, seed: int, index: int):
        self.month = month
        self.scale = scale
        self.growth = MONTHLY_GROWTH**index
        # A string seed is hashed with SHA-512 by `random`, so it is stable across runs and machines.
        self.rng = random.Random(f"{seed}:{scale:g}:{month:%Y-%m}")
        # Draws added later come from their own generator, so the events above keep theirs.
        self.caller_rng = random.Random(f"{seed}:{scale:g}:{month:%Y-%m}:callers")
        next_month = (month.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
        days = [month + datetime.timedelta(days=d) for d in range((next_month - month).days)]
        self.days = days
        self.end = datetime.datetime(next_month.year, next_month.month, 1, tzinfo=datetime.UTC)
        self.business_day_weights = [1.0 if d.weekday() < 5 else 0.3 for d in days]
        self.customer_day_weights = [1.0 if d.weekday() < 5 else 0.7 for d in days]

    def start_times(self, workload: Workload, count: int) -> list[datetime.datetime]:
        rng = self.rng
        weights = self.customer_day_weights if workload.tenant_facing else self.business_day_weights
        days = rng.choices(self.days, weights=weights, k=count)
        hours = rng.choices(range(24), weights=HOUR_WEIGHTS, k=count)
        return sorted(
            datetime.datetime(d.year, d.month, d.day, h, tzinfo=datetime.UTC)
            + datetime.timedelta(seconds=rng.randrange(3600), microseconds=rng.randrange(1_000_000))
            for d, h in zip(days, hours, strict=True)
        )

    def events(self) -> list[dict]:
        events: list[dict] = []
        for workload in WORKLOADS:
            count = max(1, round(workload.traces * self.growth * self.scale * self.rng.uniform(0.92, 1.08)))
            session: dict[str, str] = {}
            last_start = None
            for start in self.start_times(workload, count):
                # A trace soon after the previous one often continues its session: same user, tenant, environment.
                gap = start - last_start if last_start else None
                if gap is None or gap > datetime.timedelta(minutes=20) or self.rng.random() < 0.4:
                    session = self._session(workload)
                last_start = start
                events.extend(self._trace(workload, start, session))
        # Events arrive in time order, as a gateway's log would hold them; a job
        # running past the month's end is cut there, so each month stands alone.
        events = [e for e in events if e["occurred_at"] < self.end]
        events.sort(key=lambda e: e["occurred_at"])
        return events

    def _session(self, workload: Workload) -> dict[str, str]:
        rng = self.rng
        session = {"session_id": f"sess_{_hex(rng, 16)}", "environment": _weighted(rng, workload.environments)[0]}
        if workload.tenant_facing:
            session["user"] = f"cust-{rng.randrange(1, 4000):05d}"
            session["tenant"] = _weighted(rng, TENANTS)[0]
        else:
            session["user"] = f"emp-{rng.randrange(1, 1200):04d}"
        return session

    def _tags(self, workload: Workload, session: dict[str, str]) -> dict[str, str]:
        rng = self.rng
        tags = {"team": workload.team, "feature": workload.feature, **session, "trace_id": _hex(rng, 32)}
        if workload.feature == "gateway-guardrails":
            # Guardrails is a shared service: the product team whose request it checks is the caller.
            tags["caller"] = rng.choice(PRODUCT_TEAMS)
            tags["environment"] = "production"
        elif workload.feature == "doc-embedding":
            # The embedding service indexes other teams' documents: the corpus owner is the caller.
            tags["caller"] = _weighted(self.caller_rng, CORPUS_OWNERS)[0]
        # A few percent of traces come from services that forgot a tag.
        draw = rng.random()
        if draw < 0.010:
            del tags["environment"]
        elif draw < 0.022:
            del tags["feature"]
        elif draw < 0.030:
            del tags["team"]
        return tags

    def _trace(self, workload: Workload, start: datetime.datetime, session: dict[str, str]) -> Iterator[dict]:
        rng = self.rng
        tags = self._tags(workload, session)
        provider, model, _ = _weighted(rng, workload.models)
        base = {**tags, "provider": provider, "model": model}
        if provider == "openai":
            base["project"] = f"proj-{workload.team}"
        at = start
        kind = workload.kind
        if kind in ("rag", "search"):
            # Embed the query, look it up in the vector store, then (for rag) answer.
            embed_provider, embed_model, _ = _weighted(rng, EMBED)
            yield self._event(
                base,
                at,
                provider=embed_provider,
                model=embed_model,
                unit="embedding_token",
                quantity=rng.randint(6, 60),
            )
            at += datetime.timedelta(milliseconds=rng.randint(40, 200))
            yield self._event(base, at, provider="pinecone", model="", unit="vector_query", quantity=rng.randint(1, 3))
            if kind == "rag":
                at += datetime.timedelta(milliseconds=rng.randint(20, 120))
                context, generated = rng.choice(_request_sizes(workload.sizes))
                # Retrieved passages add to the prompt.
                yield self._text(base, at, context + rng.randint(800, 3000), generated, workload, call=0)
        elif kind == "chat":
            context, generated = rng.choice(_request_sizes(workload.sizes))
            yield self._text(base, at, context, generated, workload, call=0)
        elif kind in ("agent", "reasoning"):
            calls = 1 + min(int(rng.expovariate(0.35)), 12) if kind == "agent" else rng.choice((1, 1, 1, 2))
            if kind == "agent" and rng.random() < 0.004:
                calls = rng.randint(30, 60)  # a runaway agent loop, for anomaly detection
            context, generated = rng.choice(_request_sizes(workload.sizes))
            for call in range(calls):
                # Each step re-sends the conversation so far, plus the tool results.
                yield self._text(base, at, context, generated, workload, call=call)
                context += generated + rng.randint(200, 2500)
                _, generated = rng.choice(_request_sizes(workload.sizes))
                at += datetime.timedelta(seconds=rng.uniform(2, 25))
        elif kind == "vision":
            context, generated = rng.choice(_request_sizes("conv"))
            event = self._text(base, at, min(context, 1500), generated, workload, call=0)
            event["image_inputs"] = [
                {
                    "width": size[0],
                    "height": size[1],
                    "detail": _weighted(rng, (("high", 5), ("auto", 3), ("low", 2)))[0],
                }
                for size in (rng.choice(IMAGE_SIZES) for _ in range(_weighted(rng, ((1, 6), (2, 3), (4, 1)))[0]))
            ]
            yield event
        elif kind == "image":
            tier = _weighted(rng, IMAGE_TIERS[model])[0]
            yield self._event(base, at, unit="image", quantity=_weighted(rng, ((1, 6), (2, 2), (4, 2)))[0], tier=tier)
        elif kind == "transcription":
            seconds = min(rng.lognormvariate(math.log(240), 0.9), 5400)
            yield self._event(base, at, unit="transcription_second", quantity=f"{seconds:.1f}")
        elif kind == "realtime":
            seconds = min(rng.lognormvariate(math.log(150), 0.8), 1800)
            # Most sessions are speech to speech; some only transcribe a live call.
            tier = _weighted(rng, (("voice", 85), ("transcript", 15)))[0]
            yield self._event(base, at, unit="realtime_second", quantity=f"{seconds:.1f}", tier=tier)
        elif kind == "embed":
            # A re-indexing job embeds a batch of documents.
            tokens = int(rng.lognormvariate(math.log(400_000), 1.0))
            yield self._event(base, at, unit="embedding_token", quantity=tokens)
        elif kind == "gpu":
            # One line per job-hour of a 1-8 GPU job.
            gpus = rng.choice((1, 2, 4, 8))
            for _ in range(rng.randint(1, 6)):
                seconds = gpus * rng.uniform(900, 3600)
                yield self._event(base, at, unit="gpu_second", quantity=f"{seconds:.3f}", tier=GPU_TIERS[provider])
                at += datetime.timedelta(hours=1)
        else:
            raise ValueError(f"unknown workload kind {kind!r}")

    def _event(self, base: dict, at: datetime.datetime, **fields: Any) -> dict:
        return {**base, "occurred_at": at, "request_id": f"req_{_hex(self.rng, 24)}", **fields}

    def _text(
        self, base: dict, at: datetime.datetime, context: int, generated: int, workload: Workload, *, call: int
    ) -> dict:
        """A text call whose `context` tokens are split into disjoint input, cache reads and cache writes."""
        rng = self.rng
        provider, model = base["provider"], base["model"]
        quantities: dict[str, int] = {}
        if provider == "anthropic":
            # The prompt prefix (system prompt, tools, earlier turns) is cached: written
            # on a session's first call, read on the following ones.
            prefix = min(context, rng.randint(1500, 6000))
            if prefix >= 1024:
                write_unit = "cache_write_1h_token" if workload.cache_1h else "cache_write_token"
                if call == 0 and rng.random() < 0.35:
                    quantities[write_unit] = prefix
                else:
                    quantities["cached_input_token"] = prefix
                    if call > 0:
                        # Agents also cache the newest turn for the next step (5-minute cache).
                        fresh = min(context - prefix, rng.randint(200, 2500))
                        if fresh > 0:
                            quantities["cache_write_token"] = fresh
                            prefix += fresh
            quantities["input_token"] = context - prefix if prefix >= 1024 else context
        else:
            # OpenAI caches prompts of 1,024 tokens or more, in 128-token steps.
            cached = 0
            if context >= 1024 and rng.random() < 0.55:
                cached = int(context * rng.uniform(0.3, 0.9)) // 128 * 128
            quantities["input_token"] = context - cached
            if cached:
                quantities["cached_input_token"] = cached
        quantities["output_token"] = generated
        if model.startswith(("o3", "o4", "o1")):
            quantities["reasoning_token"] = int(generated * rng.uniform(1.5, 12))
        event = self._event(base, at, quantities={k: v for k, v in quantities.items() if v}, context_tokens=context)
        if workload.environments is EVAL and rng.random() < 0.5:
            event["service_tier"] = "batch"  # offline evaluations run on the batch API at half price
        return event


def demo_month_events(*, month: datetime.date, scale: float = 1.0, seed: int = DEMO_SEED, index: int = 0) -> list[dict]:
    """The demo's usage events of one month, deterministic for (month, scale, seed, index).

    `index` is the month's place in the demo period (0..2); it sets the growth.
    """
    events = _MonthGenerator(month=month, scale=scale, seed=seed, index=index).events()
    prefix = f"demo-x{scale:g}-{month:%Y-%m}"
    for number, event in enumerate(events, start=1):
        event["event_id"] = f"{prefix}-{number:07d}"
        event["occurred_at"] = event["occurred_at"].isoformat()
    return events


def demo_month_ingest(*, events: list[dict], period: str) -> list[UsageBatch]:
    """The month's events through the ingestion service, CHUNK_EVENTS at a time as a
    gateway would send them; the batches, in order."""
    batches = []
    for start in range(0, len(events), CHUNK_EVENTS):
        batch, _ = usage_ingest_events(
            events=events[start : start + CHUNK_EVENTS], source_name=f"{SOURCE_NAME} {period}"
        )
        batches.append(batch)
    return batches
