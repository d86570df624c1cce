"""A working installation from nothing: the demo organization, three months of usage,
their provider invoices, a signed mapping and an allocation run per month.

The organization is `chargeback/demo/data/org.yaml`, loaded through `org_load_file` like
any other. Usage is generated with a seeded `random.Random` per month, so the
same month always yields the same events with the same ids; a second run is
all duplicates and inserts nothing. Request sizes (context and generated
tokens) are drawn from real Azure LLM inference traces shipped in `chargeback/demo/data/`.
The events go through the ingestion service, like a gateway's would.

With rating, the demo then does what finance does at month end, through the
same services a user would call:

* the providers' invoices, written as files in their own formats into the
  demo's working directory (`MEDIA_ROOT/demo/`) and ingested with
  `invoice_ingest_file`: OpenAI's costs API pages plus a CSV of the invoice's
  platform fee and sales tax, Anthropic's cost report (cents, as strings),
  AWS SageMaker as FOCUS with a savings plan bought up front and drawn down,
  CoreWeave's GPU cluster and Pinecone's vector store in our invoice CSV.
  Usage is billed at the rated cost times 1.003 to 1.012 per model (providers
  round and meter differently), inside the 2% tolerance. An invoice once
  written is never rewritten: a provider does not reissue it when our prices
  change, and a second run re-ingests the same files as duplicates;
* the internal card of the embedding service (`rate_card_embedding.yaml`) and
  the mapping version (`mapping.yaml`), loaded and signed off by the demo's
  finance approver;
* the activity counts of the activity-based pools, from the scheduler's and
  the indexer's side (here: derived from the ledger), as a CSV through
  `activity_counts_load_file`;
* an allocation run per month, so the pages open with results.

OpenAI's usage the catalog has no price for (generated images, realtime audio)
is left off its invoice, so that the reconciliation compares like with like.
GPU seconds and vector queries have no list price either: CoreWeave, AWS and
Pinecone bill capacity, commitments and plan minimums, which the pools split
by activity. One demo scale per database: the invoices bill the month's whole
ledger.
"""

import csv
import datetime
import io
import json
import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Sum
from django.db.models.functions import TruncDate

from allocation.models import ActivityCount, AllocationRun, MappingVersion, Team, UsageLine
from allocation.selectors.ledger import period_bounds
from allocation.selectors.mapping import mapping_version_in_force
from allocation.selectors.rating import rating_run_current, usage_summary
from allocation.selectors.runs import allocation_run_current, allocation_run_summary
from allocation.services.invoices import invoice_ingest_file
from allocation.services.ledger import usage_ingest_events
from allocation.services.mapping.drafts import FINANCE_APPROVER_GROUP, mapping_sign
from allocation.services.mapping.files import mapping_load
from allocation.services.org import OrgLoadResult, org_load_file
from allocation.services.rating import usage_rate_period
from allocation.services.runs.activity import activity_counts_load_file
from allocation.services.runs.run import allocation_run_execute
from pricing.config_files import yaml_parse
from pricing.errors import ValidationFailed
from pricing.models import PriceBookVersion
from pricing.money import CENT, decimal_text, quantize
from pricing.services.genai_import import prices_import_genai
from pricing.services.price_books import price_book_load_file

__all__ = [
    "ACTIVITY_DRIVERS",
    "DEMO_DATA",
    "DEMO_PASSWORD",
    "DEMO_USERNAME",
    "DemoResult",
    "WORKLOADS",
    "Workload",
    "demo_load",
    "demo_months",
    "demo_month_events",
    "demo_user_ensure",
]

DEMO_DATA = Path(__file__).resolve().parent / "data"
ORG_FILE = DEMO_DATA / "org.yaml"
MAPPING_FILE = DEMO_DATA / "mapping.yaml"
RATE_CARD_FILE = DEMO_DATA / "rate_card_embedding.yaml"
TRACE_FILES = {
    "conv": DEMO_DATA / "AzureLLMInferenceTrace_conv_2023.csv",
    "code": DEMO_DATA / "AzureLLMInferenceTrace_code_2023.csv",
}
DEMO_USERNAME = "finance"
DEMO_PASSWORD = "chargeback-demo"
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
# Customer tenants by share of traffic: a few large accounts carry most of it.
TENANTS = (
    ("acme-retail", 30),
    ("globex", 20),
    ("initech", 14),
    ("umbrella-health", 11),
    ("stark-logistics", 9),
    ("wonka-foods", 7),
    ("tyrell-systems", 5),
    ("hooli", 4),
)
PRODUCT_TEAMS = ("search", "support-ai", "help-center", "mobile", "recommendations", "catalog", "voice")
# Teams whose documents the embedding service indexes for retrieval, by corpus size.
CORPUS_OWNERS = (
    ("search", 30),
    ("support-ai", 20),
    ("help-center", 15),
    ("recommendations", 10),
    ("devex", 8),
    ("it-helpdesk", 7),
    ("people-ops", 5),
    ("onboarding", 5),
)
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


@dataclass
class DemoResult:
    period_from: datetime.date
    period_to: datetime.date
    org: OrgLoadResult
    events: int = 0
    batches: int = 0
    events_inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    lines_inserted: int = 0
    user_created: bool = False
    seconds: float = 0.0
    events_by_month: dict[str, int] = field(default_factory=dict)
    rating_runs: list[dict[str, Any]] = field(default_factory=list)
    workdir: Path | None = None
    mapping_version: dict[str, Any] | None = None
    rate_card: dict[str, Any] | None = None
    activity_counts: dict[str, int] = field(default_factory=dict)
    invoice_files: list[dict[str, Any]] = field(default_factory=list)
    allocation_runs: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        org = self.org.as_dict()
        return {
            "period": {"from": self.period_from.isoformat(), "to": self.period_to.isoformat()},
            "org": {kind: org[kind] for kind in ("cost_centers", "teams", "features", "tenants")},
            "events": self.events,
            "events_by_month": self.events_by_month,
            "batches": self.batches,
            "events_inserted": self.events_inserted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "lines_inserted": self.lines_inserted,
            "rating_runs": self.rating_runs,
            "workdir": str(self.workdir) if self.workdir else None,
            "rate_card": self.rate_card,
            "mapping_version": self.mapping_version,
            "activity_counts": self.activity_counts,
            "invoice_files": self.invoice_files,
            "invoices": {
                "files": len(self.invoice_files),
                "lines_inserted": sum(f["inserted"] for f in self.invoice_files),
                "duplicates": sum(f["duplicate"] for f in self.invoice_files),
                "rejected": sum(f["rejected"] for f in self.invoice_files),
            },
            "allocation_runs": self.allocation_runs,
            "login": {"username": DEMO_USERNAME, "password": DEMO_PASSWORD, "created": self.user_created},
            "seconds": round(self.seconds, 1),
        }


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


def demo_user_ensure() -> tuple[Any, bool]:
    """The demo login, created unless it exists: a superuser and a finance approver, who
    signs the demo's mapping off. Returns the user and whether it was created."""
    User = get_user_model()
    user = User.objects.filter(username=DEMO_USERNAME).first()
    created = user is None
    if created:
        user = User.objects.create_superuser(
            username=DEMO_USERNAME, email="finance@example.com", password=DEMO_PASSWORD
        )
    user.groups.add(Group.objects.get_or_create(name=FINANCE_APPROVER_GROUP)[0])
    return user, created


def demo_load(
    *,
    scale: float = 1.0,
    today: datetime.date | None = None,
    seed: int = DEMO_SEED,
    rate: bool = True,
    workdir: str | Path | None = None,
) -> DemoResult:
    """Load the demo organization, three months of usage and the demo login.

    With `rate`, also genai-prices' list prices (once per package version), a
    rating of each month and the month-end close: the providers' invoices as
    files in `workdir` (default `MEDIA_ROOT/demo/x<scale>-seed<seed>`), the
    embedding rate card, the signed mapping, the activity counts and an
    allocation run per month, so the pages open with results. A second run
    inserts nothing and redoes only what new input would change.
    """
    if not (0 < scale <= 1000):
        raise ValidationFailed(f"scale must be above 0 and at most 1000, not {scale:g}", code="invalid_scale")
    started = time.monotonic()
    today = today or datetime.datetime.now(datetime.UTC).date()
    months = demo_months(today=today)
    last_day = (months[-1].replace(day=28) + datetime.timedelta(days=4)).replace(day=1) - datetime.timedelta(days=1)
    result = DemoResult(period_from=months[0], period_to=last_day, org=org_load_file(path=ORG_FILE))
    user, result.user_created = demo_user_ensure()
    inserted: dict[str, int] = {}
    for index, month in enumerate(months):
        period = f"{month:%Y-%m}"
        events = demo_month_events(month=month, scale=scale, seed=seed, index=index)
        result.events_by_month[period] = len(events)
        result.events += len(events)
        inserted[period] = 0
        for start in range(0, len(events), CHUNK_EVENTS):
            batch, _ = usage_ingest_events(
                events=events[start : start + CHUNK_EVENTS], source_name=f"{SOURCE_NAME} {period}"
            )
            result.batches += 1
            result.events_inserted += batch.inserted
            result.duplicates += batch.duplicate
            result.rejected += batch.rejected
            result.lines_inserted += batch.lines_inserted
            inserted[period] += batch.lines_inserted
    if rate:
        folder = Path(workdir) if workdir is not None else Path(settings.MEDIA_ROOT) / "demo" / f"x{scale:g}-seed{seed}"
        result.workdir = folder
        _month_end(result, months=months, scale=scale, seed=seed, user=user, inserted=inserted, workdir=folder)
    result.seconds = time.monotonic() - started
    return result


# --- the month-end close -------------------------------------------------------------------------------------------

# What the providers bill beyond usage, a month at scale 1: fees scale with the
# demo, so that the mix of a month is the same at any scale.
INVOICE_FACTOR_BASIS_POINTS = (30, 120)  # usage is billed 0.3% to 1.2% above our rating
OPENAI_PLATFORM_FEE = Decimal("12.00")  # Enterprise API platform fee
SALES_TAX = Decimal("0.08875")  # New York sales tax, on OpenAI's and Pinecone's invoices
PINECONE_MINIMUM = Decimal("50.00")  # the Standard plan's monthly minimum
PINECONE_READ_UNITS_PER_QUERY = 10
PINECONE_READ_UNIT_PRICE = Decimal("16")  # per million read units
PINECONE_WRITE_UNITS_PER_DOCUMENT = 5
PINECONE_WRITE_UNIT_PRICE = Decimal("4")  # per million write units
PINECONE_GB_PER_DOCUMENT = Decimal("0.00004")  # its chunks' vectors and metadata
PINECONE_STORAGE_PRICE = Decimal("0.33")  # per GB-month
COREWEAVE_GPU_HOUR = Decimal("2.89")  # H100 80GB SXM, reserved
COREWEAVE_STORAGE_GB = Decimal("1500")  # checkpoints and datasets
COREWEAVE_STORAGE_PRICE = Decimal("0.07")  # per GB-month
AWS_GPU_HOUR = Decimal("4.0963")  # SageMaker ml.p4d.24xlarge on demand, per A100 ($32.77 / 8)
AWS_SAVINGS_PLAN_GPU_HOUR = Decimal("2.8674")  # 30% off under the savings plan
# The savings plan, bought up front in the first month, covers this share of the
# three months' SageMaker spend at the plan's rate; the rest is billed on demand.
AWS_SAVINGS_PLAN_SHARE = Decimal("0.85")
AWS_ACCOUNT = "412345678901"
# The activity proxies of the demo's pools (see chargeback/demo/data/mapping.yaml).
DOCUMENT_TOKENS = 800  # embedding tokens per indexed document
GPU_DRIVERS = {"coreweave": "gpu_hours_coreweave", "aws": "gpu_hours_aws"}
ACTIVITY_DRIVERS: tuple[str, ...] = ("documents_indexed", *GPU_DRIVERS.values())
MONEY_PLACES = Decimal("1e-8")  # invoice amounts below the cent, as providers state usage

OPENAI_LINE_ITEMS = {
    "input_token": "input",
    "cached_input_token": "cached input",
    "output_token": "output",
    "reasoning_token": "output (reasoning)",
    "image_input_token": "image input",
    "embedding_token": "input",
    "transcription_second": "audio transcription",
    "realtime_second": "realtime audio",
    "image": "image generation",
}
ANTHROPIC_TOKEN_TYPES = {
    "input_token": ("uncached_input_tokens", "Input Tokens"),
    "output_token": ("output_tokens", "Output Tokens"),
    "cached_input_token": ("cache_read_input_tokens", "Cache Read Input Tokens"),
    "cache_write_token": ("cache_creation.ephemeral_5m_input_tokens", "5m Cache Write Input Tokens"),
    "cache_write_1h_token": ("cache_creation.ephemeral_1h_input_tokens", "1h Cache Write Input Tokens"),
}
INVOICE_CSV_COLUMNS = (
    "invoice_id",
    "provider",
    "charge_period_start",
    "charge_period_end",
    "charge_category",
    "sku",
    "description",
    "unit",
    "quantity",
    "billed_cost",
    "effective_cost",
    "list_cost",
    "currency",
)
FOCUS_COLUMNS = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SubAccountId",
    "SubAccountName",
)


@dataclass(frozen=True)
class _InvoiceFile:
    """One provider document, as the provider (or its billing portal) hands it over."""

    period: str
    name: str
    source_format: str
    provider: str
    text: str


@dataclass
class _MonthBill:
    """What a month's invoices are made of: its rated usage, quantities and activity."""

    month: datetime.date
    start: datetime.datetime
    end: datetime.datetime
    rated: list[dict]  # usage_summary rows by provider, model, unit, service tier and project
    quantities: dict[tuple[str, str], Decimal]  # (provider, unit) -> quantity
    activity: list[tuple[str, str, Decimal]]  # (driver, cost center, count)
    aws_gpu_hours: list[tuple[datetime.date, Decimal]]  # per day

    @property
    def period(self) -> str:
        return f"{self.month:%Y-%m}"


def _month_end(
    result: DemoResult,
    *,
    months: list[datetime.date],
    scale: float,
    seed: int,
    user,
    inserted: dict[str, int],
    workdir: Path,
) -> None:
    """Prices, rating, invoices, mapping, activity and an allocation run per month.

    A month is rated and allocated again only when something it reads is new:
    usage, prices, invoice lines, the rate card, the mapping or its activity.
    """
    periods = [f"{month:%Y-%m}" for month in months]
    prices_changed = _prices_import(user)
    changed = dict.fromkeys(periods, False)
    for period in periods:
        run = None if prices_changed or inserted[period] else rating_run_current(period=period)
        if run is None:
            run = usage_rate_period(period=period, created_by=user)
            changed[period] = True
        result.rating_runs.append(
            {
                "period": run.period,
                "lines_rated": run.lines_rated,
                "lines_unpriced": run.lines_unpriced,
                "cost": decimal_text(quantize(run.cost, CENT)),
            }
        )

    card, card_created = price_book_load_file(path=RATE_CARD_FILE, created_by=user)
    result.rate_card = {"book": card.book.code, "version": card.number, "created": card_created}
    version, mapping_created = _mapping_ensure(month=months[0], user=user)
    result.mapping_version = {
        "number": version.number,
        "name": version.name,
        "effective_from": version.effective_from.isoformat(),
        "signed_by": version.signed_by.get_username() if version.signed_by else None,
        "created": mapping_created,
    }
    if card_created or mapping_created:
        changed = dict.fromkeys(periods, True)

    bills = [_month_bill(month) for month in months]
    result.activity_counts = {"rows": 0, "changed": 0}
    for bill in bills:
        path = workdir / bill.period / "activity.csv"
        held = {
            (driver, center): count
            for driver, center, count in ActivityCount.objects.filter(
                period=bill.period, driver__in=ACTIVITY_DRIVERS
            ).values_list("driver", "cost_center__code", "count")
        }
        rows = [(bill.period, driver, center, count) for driver, center, count in bill.activity]
        _write(path, _csv_text(("period", "driver", "cost_center", "count"), rows), replace=True)
        activity_counts_load_file(path=path)
        result.activity_counts["rows"] += len(rows)
        if held != {(driver, center): count for driver, center, count in bill.activity}:
            result.activity_counts["changed"] += 1
            changed[bill.period] = True

    for invoice in _invoice_files(bills, scale=scale, seed=seed):
        path = workdir / invoice.period / invoice.name
        _write(path, invoice.text, replace=False)
        batch = invoice_ingest_file(
            path=path, source_format=invoice.source_format, provider=invoice.provider, created_by=user
        )
        if batch.status != "completed" or batch.rejected:
            # The demo writes these files itself: a refusal or a rejected line is its own bug.
            raise ValidationFailed(
                f"demo invoice {path}: {batch.status}, {batch.rejected} line(s) rejected {batch.error}".strip(),
                code="demo_invoice_refused",
            )
        result.invoice_files.append(
            {
                "file": str(path.relative_to(workdir)),
                "format": invoice.source_format,
                "provider": invoice.provider,
                "inserted": batch.inserted,
                "duplicate": batch.duplicate,
                "rejected": batch.rejected,
            }
        )
        if batch.inserted:
            changed[invoice.period] = True

    for period in periods:
        result.allocation_runs.append(_allocate(period, user=user, again=changed[period]))


def _prices_import(user) -> bool:
    """genai-prices' list prices, unless this package version's are in already (importing
    them again adds nothing, slowly). True when prices changed."""
    source = f"genai-prices {package_version('genai-prices')}"
    if PriceBookVersion.objects.filter(source=source).exists():
        return False
    return bool(prices_import_genai(created_by=user).versions_created)


def _mapping_ensure(*, month: datetime.date, user) -> tuple[MappingVersion, bool]:
    """The signed version in force for `month`; when there is none, `mapping.yaml` loaded
    with effective_from set to `month` and signed off by the demo's finance approver."""
    in_force = mapping_version_in_force(period=month)
    if in_force is not None:
        return in_force, False
    text = MAPPING_FILE.read_text(encoding="utf-8")
    document, lines = yaml_parse(text=text, source=str(MAPPING_FILE), error_code="mapping_invalid")
    document["effective_from"] = month.isoformat()
    draft = mapping_load(document=document, source=str(MAPPING_FILE), lines=lines, created_by=user)
    return mapping_sign(version=draft, actor=user, reason="The demo's mapping, signed off at setup"), True


def _allocate(period: str, *, user, again: bool) -> dict[str, Any]:
    """Run the month's allocation (unless its current run read the same inputs) and its figures."""
    run = None if again else allocation_run_current(period=period)
    if run is None:
        closed = AllocationRun.objects.filter(period=period, closed_at__isnull=False).exists()
        run = allocation_run_current(period=period) if closed else allocation_run_execute(period=period, actor=user)
    summary = allocation_run_summary(run=run, cost_centers=False)
    return {
        "period": period,
        "run": run.pk,
        "invoice_total": summary["invoice_total"],
        "allocated": summary["allocated"],
        "chargeback": summary["chargeback"],
        "showback": summary["showback"],
        "unallocated": summary["unallocated"]["total"],
        "unallocated_by_reason": summary["unallocated"]["by_reason"],
        "flagged": summary["flagged"],
        "closed": summary["closed"],
    }


def _month_bill(month: datetime.date) -> _MonthBill:
    period = f"{month:%Y-%m}"
    start, end = period_bounds(period)
    lines = UsageLine.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
    aws_days = (
        lines.filter(provider="aws", unit="gpu_second")
        .annotate(day=TruncDate("occurred_at", tzinfo=datetime.UTC))
        .values("day")
        .annotate(seconds=Sum("quantity"))
        .order_by("day")
    )
    return _MonthBill(
        month=month,
        start=start,
        end=end,
        rated=usage_summary(period=period, group_by=["provider", "model", "unit", "service_tier", "project"]),
        quantities={
            (row["provider"], row["unit"]): row["quantity"]
            for row in usage_summary(period=period, group_by=["provider", "unit"])
        },
        activity=_activity(lines),
        aws_gpu_hours=[(row["day"], quantize(row["seconds"] / 3600, Decimal("0.000001"))) for row in aws_days],
    )


def _activity(lines) -> list[tuple[str, str, Decimal]]:
    """(driver, cost center, count) of a month, as the indexer and the GPU schedulers report
    them: documents indexed per corpus owner, GPU hours per team on each provider."""
    centers = dict(Team.objects.values_list("code", "cost_center__code"))
    counts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    embedded = lines.filter(unit="embedding_token").exclude(caller="").values("caller").annotate(q=Sum("quantity"))
    for row in embedded.order_by():
        if row["caller"] in centers:
            counts[("documents_indexed", centers[row["caller"]])] += row["q"] / DOCUMENT_TOKENS
    gpu = lines.filter(unit="gpu_second").exclude(team="").values("provider", "team").annotate(q=Sum("quantity"))
    for row in gpu.order_by():
        if row["team"] in centers and row["provider"] in GPU_DRIVERS:
            counts[(GPU_DRIVERS[row["provider"]], centers[row["team"]])] += row["q"] / 3600
    rows = []
    for (driver, center), count in sorted(counts.items()):
        places = Decimal(1) if driver == "documents_indexed" else Decimal("0.001")
        if (count := quantize(count, places)) > 0:
            rows.append((driver, center, count))
    return rows


def _invoice_factor(*, seed: int, month: datetime.date, provider: str, model: str) -> Decimal:
    """What a provider bills over our rating of one model's usage in a month (1.003 to 1.012)."""
    rng = random.Random(f"{seed}:{month:%Y-%m}:invoice:{provider}:{model}")
    return 1 + Decimal(rng.randint(*INVOICE_FACTOR_BASIS_POINTS)) / 10000


def _invoice_files(bills: list[_MonthBill], *, scale: float, seed: int) -> Iterator[_InvoiceFile]:
    """Every provider document of the demo's months, in the order a user would load them."""
    fee_scale = Decimal(f"{scale:g}")
    savings_plan = _aws_focus(bills)
    for bill in bills:
        yield from _openai(bill, seed=seed, fee_scale=fee_scale)
        yield _anthropic(bill, seed=seed)
        yield _InvoiceFile(bill.period, "aws-focus.csv", "focus", "aws", savings_plan[bill.period])
        yield _coreweave(bill, fee_scale=fee_scale)
        yield _pinecone(bill, fee_scale=fee_scale)


def _usage_rows(bill: _MonthBill, provider: str, *, seed: int) -> Iterator[tuple[dict, Decimal]]:
    """The provider's priced usage groups with the amount it bills for each."""
    factors: dict[str, Decimal] = {}
    for row in bill.rated:
        if row["provider"] != provider or not row["cost"]:
            continue
        if row["model"] not in factors:
            factors[row["model"]] = _invoice_factor(seed=seed, month=bill.month, provider=provider, model=row["model"])
        amount = quantize(row["cost"] * factors[row["model"]], MONEY_PLACES)
        if amount:
            yield row, amount


def _openai(bill: _MonthBill, *, seed: int, fee_scale: Decimal) -> Iterator[_InvoiceFile]:
    """The costs API's page of the month, and the invoice's other lines (the platform fee
    and sales tax, which the API leaves out) in our CSV, on the same invoice."""
    results = []
    usage = Decimal(0)
    for row, amount in _usage_rows(bill, "openai", seed=seed):
        usage += amount
        item = f"{row['model']}, {OPENAI_LINE_ITEMS.get(row['unit'], row['unit'])}"
        results.append(
            {
                "object": "organization.costs.result",
                "amount": {"value": amount, "currency": "usd"},
                "line_item": item + (f" ({row['service_tier']})" if row["service_tier"] else ""),
                "project_id": row["project"] or None,
                "api_key_id": None,
                "quantity": None,
                "quantity_unit": None,
            }
        )
    bucket = {
        "object": "bucket",
        "start_time": int(bill.start.timestamp()),
        "end_time": int(bill.end.timestamp()),
        "results": results,
    }
    page = {"object": "page", "data": [bucket], "has_more": False, "next_page": None}
    yield _InvoiceFile(bill.period, "openai-costs.json", "openai-costs", "openai", _json_text(page))
    fee = quantize(OPENAI_PLATFORM_FEE * fee_scale, CENT)
    invoice = {
        "invoice_id": f"openai:{bill.period}",
        "provider": "openai",
        "charge_period_start": _iso(bill.start),
        "charge_period_end": _iso(bill.end),
        "currency": "USD",
    }
    rows = [
        {
            **invoice,
            "charge_category": "purchase",
            "sku": "platform-fee-enterprise",
            "description": "API platform fee, Enterprise (SSO, data residency, support)",
            "billed_cost": fee,
        },
        {
            **invoice,
            "charge_category": "tax",
            "sku": "sales-tax-ny",
            "description": f"Sales tax, New York ({decimal_text(SALES_TAX * 100)}%)",
            "billed_cost": quantize((usage + fee) * SALES_TAX, CENT),
        },
    ]
    yield _InvoiceFile(bill.period, "openai-invoice-charges.csv", "csv", "openai", _csv_text(INVOICE_CSV_COLUMNS, rows))


def _anthropic(bill: _MonthBill, *, seed: int) -> _InvoiceFile:
    """The cost report of the month: amounts in cents, as decimal strings."""
    results = []
    for row, amount in _usage_rows(bill, "anthropic", seed=seed):
        token_type, label = ANTHROPIC_TOKEN_TYPES.get(row["unit"], (row["unit"], row["unit"]))
        results.append(
            {
                "amount": decimal_text(quantize(amount * 100, Decimal("0.00001"))),
                "context_window": "0-200k",
                "cost_type": "tokens",
                "currency": "USD",
                "description": f"{row['model']} Usage - {label}",
                "model": row["model"],
                "service_tier": row["service_tier"] or "standard",
                "token_type": token_type,
                "workspace_id": None,
            }
        )
    bucket = {"starting_at": _iso(bill.start), "ending_at": _iso(bill.end), "results": results}
    page = {"data": [bucket], "has_more": False, "next_page": None}
    return _InvoiceFile(bill.period, "anthropic-cost-report.json", "anthropic-costs", "anthropic", _json_text(page))


def _aws_focus(bills: list[_MonthBill]) -> dict[str, str]:
    """SageMaker's FOCUS export per month: a savings plan bought up front in the first
    month (billed, effective cost 0) and drawn down by the GPU hours it covers (billed 0,
    effective cost at the plan's rate); hours beyond it are billed on demand."""
    planned = sum((hours for bill in bills for _, hours in bill.aws_gpu_hours), Decimal(0))
    commitment = quantize(planned * AWS_SAVINGS_PLAN_GPU_HOUR * AWS_SAVINGS_PLAN_SHARE, Decimal(1))
    plan_id = f"arn:aws:savingsplans::{AWS_ACCOUNT}:savingsplan/sp-larkspur-gpu"
    balance = commitment
    files = {}
    for index, bill in enumerate(bills):
        invoice = {
            "BillingAccountId": AWS_ACCOUNT,
            "BillingAccountName": "Larkspur Software",
            "BillingCurrency": "USD",
            "BillingPeriodStart": _iso(bill.start),
            "BillingPeriodEnd": _iso(bill.end),
            "InvoiceId": f"{bill.month:%Y%m}-{AWS_ACCOUNT[-6:]}",
            "InvoiceIssuerName": "Amazon Web Services, Inc.",
            "ProviderName": "AWS",
            "PublisherName": "Amazon Web Services, Inc.",
            "SubAccountId": "587412369850",
            "SubAccountName": "ml-training",
        }
        rows = []
        if index == 0 and commitment:
            rows.append(
                {
                    **invoice,
                    "BilledCost": commitment,
                    "EffectiveCost": Decimal(0),
                    "ChargeCategory": "Purchase",
                    "ChargeDescription": "SageMaker Savings Plan, 3 months, all upfront",
                    "ChargeFrequency": "One-Time",
                    "ChargePeriodStart": _iso(bill.start),
                    "ChargePeriodEnd": _iso(bill.end),
                    "CommitmentDiscountCategory": "Spend",
                    "CommitmentDiscountId": plan_id,
                    "CommitmentDiscountType": "SageMaker Savings Plan",
                    "PricingCategory": "Committed",
                    "ServiceCategory": "AI and Machine Learning",
                    "ServiceName": "Savings Plans for AWS Compute usage",
                    "SkuId": "sp-sagemaker-3m-upfront",
                }
            )
        for day, hours in bill.aws_gpu_hours:
            day_start = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
            usage = {
                **invoice,
                "ChargeCategory": "Usage",
                "ChargeDescription": "SageMaker training, ml.p4d.24xlarge (NVIDIA A100 40GB), per GPU-hour",
                "ChargeFrequency": "Usage-Based",
                "ChargePeriodStart": _iso(day_start),
                "ChargePeriodEnd": _iso(day_start + datetime.timedelta(days=1)),
                "ConsumedUnit": "GPU-Hours",
                "ListUnitPrice": AWS_GPU_HOUR,
                "PricingUnit": "GPU-Hours",
                "RegionId": "us-east-1",
                "ServiceCategory": "AI and Machine Learning",
                "ServiceName": "Amazon SageMaker",
                "SkuId": "USE1-ml.p4d.24xlarge-Training",
            }
            covered, covered_hours = quantize(hours * AWS_SAVINGS_PLAN_GPU_HOUR, MONEY_PLACES), hours
            if covered > balance:  # the plan runs out today: the rest of the day is on demand
                covered = balance
                covered_hours = min(quantize(balance / AWS_SAVINGS_PLAN_GPU_HOUR, Decimal("0.000001")), hours)
            if covered:
                balance -= covered
                rows.append(
                    {
                        **usage,
                        "BilledCost": Decimal(0),
                        "EffectiveCost": covered,
                        "ListCost": quantize(covered_hours * AWS_GPU_HOUR, MONEY_PLACES),
                        "CommitmentDiscountCategory": "Spend",
                        "CommitmentDiscountId": plan_id,
                        "CommitmentDiscountStatus": "Used",
                        "CommitmentDiscountType": "SageMaker Savings Plan",
                        "ConsumedQuantity": covered_hours,
                        "PricingCategory": "Committed",
                        "PricingQuantity": covered_hours,
                    }
                )
            rest = hours - covered_hours if covered else hours
            if rest > 0:
                cost = quantize(rest * AWS_GPU_HOUR, MONEY_PLACES)
                rows.append(
                    {
                        **usage,
                        "BilledCost": cost,
                        "EffectiveCost": cost,
                        "ListCost": cost,
                        "ConsumedQuantity": rest,
                        "PricingCategory": "Standard",
                        "PricingQuantity": rest,
                    }
                )
        files[bill.period] = _csv_text(FOCUS_COLUMNS, rows, empty="NULL")
    return files


def _coreweave(bill: _MonthBill, *, fee_scale: Decimal) -> _InvoiceFile:
    """The GPU cluster's invoice: reserved H100 hours used, and the cluster's storage."""
    invoice = {
        "invoice_id": f"CW-{bill.month:%Y%m}",
        "provider": "coreweave",
        "charge_period_start": _iso(bill.start),
        "charge_period_end": _iso(bill.end),
        "charge_category": "usage",
        "currency": "USD",
    }
    hours = quantize(bill.quantities.get(("coreweave", "gpu_second"), Decimal(0)) / 3600, Decimal("0.000001"))
    storage = quantize(COREWEAVE_STORAGE_GB * fee_scale, Decimal("0.001"))
    rows = []
    if hours:
        rows.append(
            {
                **invoice,
                "sku": "gpu-h100-80gb-sxm-reserved",
                "description": "NVIDIA H100 80GB SXM GPU-hours, reserved",
                "unit": "GPU-hour",
                "quantity": hours,
                "billed_cost": quantize(hours * COREWEAVE_GPU_HOUR, MONEY_PLACES),
            }
        )
    rows.append(
        {
            **invoice,
            "sku": "storage-object-hot",
            "description": "Hot object storage (checkpoints and datasets)",
            "unit": "GB-month",
            "quantity": storage,
            "billed_cost": quantize(storage * COREWEAVE_STORAGE_PRICE, MONEY_PLACES),
        }
    )
    return _InvoiceFile(bill.period, "coreweave-invoice.csv", "csv", "coreweave", _csv_text(INVOICE_CSV_COLUMNS, rows))


def _pinecone(bill: _MonthBill, *, fee_scale: Decimal) -> _InvoiceFile:
    """The vector store's invoice: read and write units, storage, the plan's minimum, tax."""
    invoice = {
        "invoice_id": f"PC-{bill.month:%Y%m}",
        "provider": "pinecone",
        "charge_period_start": _iso(bill.start),
        "charge_period_end": _iso(bill.end),
        "charge_category": "usage",
        "currency": "USD",
    }
    documents = sum((count for driver, _, count in bill.activity if driver == "documents_indexed"), Decimal(0))
    reads = bill.quantities.get(("pinecone", "vector_query"), Decimal(0)) * PINECONE_READ_UNITS_PER_QUERY
    writes = documents * PINECONE_WRITE_UNITS_PER_DOCUMENT
    gigabytes = quantize(documents * PINECONE_GB_PER_DOCUMENT, Decimal("0.000001"))
    rows = [
        {
            **invoice,
            "sku": "serverless-read-units",
            "description": "Serverless read units (vector store queries)",
            "unit": "read unit",
            "quantity": reads,
            "billed_cost": quantize(reads * PINECONE_READ_UNIT_PRICE / 1_000_000, MONEY_PLACES),
        },
        {
            **invoice,
            "sku": "serverless-write-units",
            "description": "Serverless write units (vector store upserts)",
            "unit": "write unit",
            "quantity": writes,
            "billed_cost": quantize(writes * PINECONE_WRITE_UNIT_PRICE / 1_000_000, MONEY_PLACES),
        },
        {
            **invoice,
            "sku": "serverless-storage",
            "description": "Serverless vector store storage",
            "unit": "GB-month",
            "quantity": gigabytes,
            "billed_cost": quantize(gigabytes * PINECONE_STORAGE_PRICE, MONEY_PLACES),
        },
    ]
    subtotal = sum((row["billed_cost"] for row in rows), Decimal(0))
    minimum = quantize(PINECONE_MINIMUM * fee_scale, CENT)
    if subtotal < minimum:
        rows.append(
            {
                **invoice,
                "sku": "standard-plan-minimum",
                "description": "Standard plan minimum usage, balance",
                "billed_cost": minimum - subtotal,
            }
        )
        subtotal = minimum
    rows.append(
        {
            **invoice,
            "charge_category": "tax",
            "sku": "sales-tax-ny",
            "description": f"Sales tax, New York ({decimal_text(SALES_TAX * 100)}%)",
            "billed_cost": quantize(subtotal * SALES_TAX, CENT),
        }
    )
    return _InvoiceFile(bill.period, "pinecone-invoice.csv", "csv", "pinecone", _csv_text(INVOICE_CSV_COLUMNS, rows))


# --- files ---------------------------------------------------------------------------------------------------------


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(value: Any, empty: str) -> str:
    if value is None or value == "":
        return empty
    return decimal_text(value) if isinstance(value, Decimal) else str(value)


def _csv_text(columns: Sequence[str], rows: Sequence[dict | tuple], *, empty: str = "") -> str:
    """CSV with a header row; amounts written digit for digit, empty cells as `empty`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = [row.get(column) for column in columns] if isinstance(row, dict) else list(row)
        writer.writerow([_cell(value, empty) for value in values])
    return out.getvalue()


_NUMBER_MARK = "\x00"


def _json_text(document: Any) -> str:
    """JSON in which Decimal amounts are JSON numbers, digit for digit (never through float)."""

    def number(value: Any) -> str:
        if isinstance(value, Decimal):
            return _NUMBER_MARK + decimal_text(value)
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(document, indent=2, default=number)
    return re.sub(r'"\\u0000(-?[0-9.]+)"', r"\1", text) + "\n"


def _write(path: Path, text: str, *, replace: bool) -> None:
    """Write a file whole (through a temporary file), or keep it if it exists and not `replace`."""
    if path.exists() and not replace:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
