"""Our rating agrees with genai-prices' own calc_price, usage for usage.

The list prices come from genai-prices (pricing.services.genai_import); the
usage goes in through the ledger (usage_ingest_events) with our disjoint
units and is rated set-based (usage_rate_period, rated_lines_sql) and one
event at a time (rate_event). genai-prices is given the same usage in its own
nested terms (input_tokens holds cache reads and writes, audio and image
input; output_tokens holds reasoning, audio and image output) and the same
time, service tier and model name. Every usage must cost the same within
$0.000001, except where a gap is named in KNOWN_GAPS: such usage must still
be priced, and each gap must still show, so a closed gap is noticed.
"""

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelPrice, StartDateConstraint, TieredPrices
from genai_prices.units import _get_registry

from allocation.models import RatedUsage
from allocation.selectors.rating import rated_lines_params, rated_lines_sql
from allocation.services.ledger import usage_ingest_events
from allocation.services.rating import usage_rate_period
from pricing.models import AiModel, ModelAlias, PriceBook, PriceBookVersion, Provider
from pricing.periods import Period
from pricing.selectors import latest_price_book_versions, rate_event
from pricing.services.genai_import import prices_import_genai

TOLERANCE = Decimal("0.000001")
SEED = 20261123
DRAWS_PER_MODEL = 36

# genai-prices' key a ledger unit is the leaf of; its nested usage counts the
# quantity in that key and in every key whose dimensions the leaf has.
LEDGER_LEAF: dict[str, str] = {
    "input_token": "input_text_tokens",
    "cached_input_token": "cache_text_read_tokens",
    "cache_write_token": "cache_text_write_5m_tokens",
    "cache_write_1h_token": "cache_text_write_1h_tokens",
    "output_token": "output_text_tokens",
    "reasoning_token": "output_text_reasoning_tokens",
    "audio_input_token": "input_audio_tokens",
    "cached_audio_input_token": "cache_audio_read_tokens",
    "audio_output_token": "output_audio_tokens",
    "image_input_token": "input_image_tokens",
    "cached_image_input_token": "cache_image_read_tokens",
    "image_output_token": "output_image_tokens",
    "embedding_token": "input_text_tokens",
    "transcription_second": "input_audio_seconds",
    "character": "input_characters",
    "tool_call": "web_searches",  # drawn with tier "web_search" only
}
INPUT_UNITS = frozenset(
    {
        "input_token",
        "cached_input_token",
        "cache_write_token",
        "cache_write_1h_token",
        "audio_input_token",
        "cached_audio_input_token",
        "image_input_token",
        "cached_image_input_token",
        "embedding_token",
    }
)
TEXT = ("input_token", "output_token")
CACHE_READ = ("cached_input_token",)
CACHE_WRITES = ("cache_write_token", "cache_write_1h_token")
REASONING = ("reasoning_token",)
AUDIO = ("audio_input_token", "cached_audio_input_token", "audio_output_token")
IMAGE_IN = ("image_input_token", "cached_image_input_token")
WEB_SEARCH = ("tool_call",)
ANTHROPIC = TEXT + CACHE_READ + CACHE_WRITES + REASONING + WEB_SEARCH

# Where genai-prices and our ledger knowingly part ways, by name; only usage
# drawn into a gap is let off the comparison. Each gap must still show in the
# draw: when one no longer does, it is closed and its entry goes.
KNOWN_GAPS: dict[str, str] = {
    "groq_whisper_minimum": (
        "genai-prices bills a Groq whisper-large-v3 request shorter than 10 s as 10 s; the ledger holds and "
        "rates the seconds transcribed"
    ),
    "citation_tokens": (
        "the unit catalog has no citation-token unit: sonar-deep-research citation tokens reach the ledger as "
        "output_token at the output rate; genai-prices prices them at the lower citation rate"
    ),
}


@dataclass(frozen=True)
class Spec:
    """A model to draw usage for: the units it is billed in, names usage reports."""

    provider: str
    model: str
    units: tuple[str, ...]
    names: tuple[str, ...] = ()
    per_call: tuple[str, ...] = ()  # units billed once per call (perplexity's requests)
    citations: bool = False


SPECS: tuple[Spec, ...] = (
    # Anthropic: cache reads, 5-minute and 1-hour writes, >200k tiers, batch, dated changes.
    Spec("anthropic", "claude-sonnet-4-5", ANTHROPIC, names=("claude-sonnet-4-5-20250929",)),
    Spec("anthropic", "claude-sonnet-4-6", ANTHROPIC),
    Spec("anthropic", "claude-opus-4-6", ANTHROPIC),
    Spec("anthropic", "claude-haiku-4-5", ANTHROPIC, names=("claude-haiku-4-5-20251001",)),
    Spec("anthropic", "claude-3-5-haiku-latest", ANTHROPIC, names=("claude-3-5-haiku-20241022",)),
    # Google: tiers, batch, audio input, image output, live audio, embeddings.
    Spec("google", "gemini-2.5-pro", TEXT + CACHE_READ + REASONING + WEB_SEARCH),
    Spec("google", "gemini-2.5-flash", TEXT + CACHE_READ + REASONING + AUDIO[:2] + WEB_SEARCH),
    Spec("google", "gemini-3-flash-preview", TEXT + CACHE_READ + AUDIO[:2] + WEB_SEARCH),
    Spec("google", "gemini-2.5-flash-image", TEXT + ("image_output_token",)),
    Spec("google", "gemini-3.1-flash-live-preview", TEXT + ("audio_input_token", "audio_output_token") + IMAGE_IN[:1]),
    Spec("google", "gemini-embedding-001", ("embedding_token",)),
    # OpenAI: batch, flex and priority, dated change, tiers, audio, image, embeddings, speech.
    Spec("openai", "gpt-4o", TEXT + CACHE_READ + WEB_SEARCH, names=("gpt-4o-2024-11-20",)),
    Spec("openai", "o3", TEXT + CACHE_READ + REASONING, names=("o3-2025-04-16",)),
    Spec("openai", "gpt-5.4", TEXT + CACHE_READ + REASONING + WEB_SEARCH),
    Spec("openai", "gpt-realtime", TEXT + CACHE_READ + AUDIO + IMAGE_IN),
    Spec("openai", "gpt-4o-realtime-preview", TEXT + CACHE_READ + AUDIO, names=("gpt-4o-realtime-preview-2024-12-17",)),
    Spec("openai", "gpt-audio", TEXT + AUDIO[:1] + AUDIO[2:]),
    Spec("openai", "gpt-image-1.5", TEXT + CACHE_READ + IMAGE_IN + ("image_output_token",)),
    Spec("openai", "gpt-image-1", TEXT + CACHE_READ + IMAGE_IN + ("image_output_token",)),
    Spec("openai", "text-embedding-3-small", ("embedding_token",)),
    Spec("openai", "whisper-1", ("transcription_second",)),
    Spec("openai", "tts-1", ("character",)),
    # Mistral, xAI, Groq, DeepSeek, Perplexity, Voyage, Cohere.
    Spec("mistral", "mistral-small-latest", TEXT + CACHE_READ),
    Spec("mistral", "mistral-large-4", TEXT + CACHE_READ),
    Spec("x-ai", "grok-4.20", TEXT + CACHE_READ + REASONING, names=("grok-4.20-0309-reasoning",)),
    Spec("groq", "llama-3.3-70b-versatile", TEXT),
    Spec("groq", "openai/gpt-oss-120b", TEXT + CACHE_READ + REASONING),
    Spec("groq", "whisper-large-v3", ("transcription_second",)),
    Spec("deepseek", "deepseek-v3.2", TEXT),
    Spec("perplexity", "sonar", TEXT, per_call=("request",)),
    Spec("perplexity", "sonar-deep-research", TEXT + REASONING + WEB_SEARCH, citations=True),
    Spec("voyageai", "voyage-3.5", ("embedding_token",)),
    Spec("cohere", "embed-v4.0", ("embedding_token",)),
    Spec("cohere", "command-r", TEXT),
)
# Months usage is drawn in (besides the days around each model's price changes);
# 2025-03 is before any change, 2026-11 after the batch and flex prices start.
MONTHS = ((2025, 3), (2025, 6), (2026, 1), (2026, 3), (2026, 5), (2026, 10), (2026, 11))
LAST_DAY = date(2026, 11, 20)
# Scenarios the draw must cover, with the least count each.
SCENARIO_MINIMUMS: dict[str, int] = {
    "cache_read": 200,
    "cache_write_5m": 50,
    "cache_write_1h": 50,
    "audio": 100,
    "image": 100,
    "long_context": 50,  # past a tier threshold in force
    "context_threshold_edge": 20,  # one token either side of it, or on it
    "batch": 100,  # with batch prices in force
    "flex_or_priority": 20,
    "service_tier_priced_as_standard": 20,  # a tier before it has prices of its own
    "before_price_change": 50,
    "change_day_edge": 30,  # the first moment of a new price or the last of the old
    "reasoning": 100,
    "embedding": 100,
    "transcription": 50,
    "speech_characters": 20,
    "web_search": 100,
    "request": 20,
}


@dataclass
class Draw:
    event: dict
    spec: Spec
    name: str
    occurred_at: datetime
    service_tier: str
    quantities: dict[str, Decimal]
    genai_usage: dict[str, int | Decimal]
    price_context: dict[str, str] | None
    scenarios: set[str] = field(default_factory=set)
    gap: str | None = None

    def describe(self) -> str:
        quantities = {unit: str(q) for unit, q in self.quantities.items()}
        return (
            f"{self.event['event_id']} {self.spec.provider}/{self.name} at {self.occurred_at.isoformat()} "
            f"tier={self.service_tier or 'standard'} context={self.event.get('context_tokens')} {quantities}"
        )


# --- genai-prices' side --------------------------------------------------------


def _nested_usage(leaves: list[tuple[str, int | Decimal]]) -> dict[str, int | Decimal]:
    """genai-prices usage: each leaf counted in its own key and every enclosing key.

    Every key is given, zeros too: genai-prices refuses to infer a key such as
    cache_audio_read_tokens that two reported keys (cache reads, audio) overlap in.
    """
    registry = _get_registry()
    usage: dict[str, int | Decimal] = {key: 0 for key in registry.units if key != "requests"}
    for leaf_key, quantity in leaves:
        leaf = registry.units[leaf_key]
        for key, unit in registry.units.items():
            if key != "requests" and unit.dimensions.items() <= leaf.dimensions.items():
                usage[key] += quantity
    return usage


def _genai_price(draw: Draw) -> Decimal:
    calculation = calc_price(
        Usage(**draw.genai_usage),
        draw.name,
        provider_id=draw.spec.provider,
        genai_request_timestamp=draw.occurred_at,
        price_context=draw.price_context,
    )
    assert calculation.model.id == draw.spec.model, f"genai-prices read {draw.name} as {calculation.model.id}"
    return calculation.total_price


def _model_info(provider: str, model: str):
    snapshot = get_snapshot()
    info = next(p for p in snapshot.providers if p.id == provider)
    return next(m for m in info.models if m.id == model)


def _model_prices(info) -> list[ModelPrice]:
    prices = [info.prices] if isinstance(info.prices, ModelPrice) else [c.prices for c in info.prices]
    return prices + [v.prices for v in info.price_variants or []]


def _thresholds(info) -> list[int]:
    """The long-context tier starts of any of the model's prices."""
    starts = set()
    for prices in _model_prices(info):
        for value in prices.__dict__.values():
            if isinstance(value, TieredPrices):
                starts.update(tier.start for tier in value.tiers)
    return sorted(starts)


def _change_dates(info) -> tuple[list[date], list[date]]:
    """Dates the model's standard prices change, and dates its variants start."""
    standard = []
    if isinstance(info.prices, list):
        standard = [c.constraint.start_date for c in info.prices if isinstance(c.constraint, StartDateConstraint)]
    variants = [v.constraint.start_date for v in info.price_variants or [] if v.constraint is not None]
    return sorted(standard), sorted(set(variants))


def _service_tiers(info) -> list[str]:
    """Non-standard service tiers the model has prices for, as the ledger names them."""
    tiers = []
    for variant in info.price_variants or []:
        if variant.when == {"processing": "batch"}:
            tiers.append("batch")
        elif set(variant.when) == {"service_tier"} and variant.when["service_tier"] != "default":
            tiers.append(variant.when["service_tier"])
    return sorted(set(tiers))


def _variant_start(info, service_tier: str) -> date | None:
    """The first day the service tier has prices of its own."""
    when = {"processing": "batch"} if service_tier == "batch" else {"service_tier": service_tier}
    starts = [v.constraint.start_date if v.constraint else None for v in info.price_variants if v.when == when]
    return None if None in starts else min(starts)


def _genai_prices_leaf(info, at: datetime, price_context: dict | None, leaf_key: str) -> bool:
    """Whether genai-prices has a price covering the leaf at that time (else it charges $0)."""
    registry = _get_registry()
    leaf = registry.units[leaf_key]
    prices = info.get_prices(at, price_context)
    return any(
        getattr(prices, unit.price_key, None) is not None and unit.dimensions.items() <= leaf.dimensions.items()
        for unit in registry.units.values()
    )


# --- drawing usage -------------------------------------------------------------


def _draw_time(
    rng: random.Random, standard_changes: list[date], variant_starts: list[date], since: date | None
) -> datetime:
    """A moment in MONTHS, near a price change (often exactly at it), or after `since`."""
    last = datetime.combine(LAST_DAY, time(), tzinfo=UTC)
    if since is not None:
        start = datetime.combine(since, time(), tzinfo=UTC)
        return start + timedelta(seconds=rng.randrange(int((last - start).total_seconds())))
    changes = standard_changes + variant_starts
    if changes and rng.random() < 0.5:
        change = rng.choice(changes)
        edge = rng.random()
        midnight = datetime.combine(change, time(), tzinfo=UTC)
        if edge < 0.15:
            return midnight  # the first moment of the new price
        if edge < 0.3:
            return midnight - timedelta(microseconds=1)  # the last moment of the old one
        moment = midnight + timedelta(seconds=rng.randint(-4 * 86400, 4 * 86400))
        return min(moment, last)
    year, month = rng.choice(MONTHS)
    start, end = Period(year, month).bounds
    end = min(end, last)
    return start + timedelta(seconds=rng.randrange(int((end - start).total_seconds())))


def _quantity(rng: random.Random, unit: str) -> Decimal:
    if unit == "transcription_second":
        return Decimal(int(10 ** rng.uniform(2, 5.5))) / 1000  # 0.1 s to 5 min, a third under 10 s
    if unit == "character":
        return Decimal(rng.randint(1, 20_000))
    if unit == "tool_call":
        return Decimal(rng.randint(1, 5))
    return Decimal(int(10 ** rng.uniform(0, 4.8)))


def _draw(rng: random.Random, spec: Spec, index: int) -> Draw:
    info = _model_info(spec.provider, spec.model)
    standard_changes, variant_starts = _change_dates(info)
    name = rng.choice((spec.model, *spec.names))
    tiers = _service_tiers(info)
    service_tier = rng.choice(tiers) if tiers and rng.random() < 0.4 else ""
    # Mostly once the tier has prices of its own; sometimes before, when it costs the standard price.
    since = _variant_start(info, service_tier) if service_tier and rng.random() < 0.75 else None
    occurred_at = _draw_time(rng, standard_changes, variant_starts, since)
    if service_tier == "batch":
        price_context = {"processing": "batch"}
    elif service_tier:
        price_context = {"service_tier": service_tier}
    else:
        price_context = None

    # Only units genai-prices prices at that time: an unpriced unit is $0 to it, unpriced to us.
    units = [u for u in spec.units if _genai_prices_leaf(info, occurred_at, price_context, LEDGER_LEAF[u])]
    chosen = [u for u in units if rng.random() < 0.55] or [rng.choice(units)]
    quantities = {unit: _quantity(rng, unit) for unit in chosen}
    scenarios: set[str] = set()

    thresholds = _thresholds(info)
    if thresholds and "input_token" in units and rng.random() < 0.5:
        threshold = rng.choice(thresholds)
        if rng.random() < 0.3:
            target = threshold + rng.choice((-1, 0, 1))
            scenarios.add("context_threshold_edge")
        else:
            target = threshold + rng.randint(1, 300_000)
        others = sum(q for u, q in quantities.items() if u in INPUT_UNITS and u != "input_token")
        if others >= target:
            quantities = {u: q for u, q in quantities.items() if u not in INPUT_UNITS}
            others = 0
        quantities["input_token"] = Decimal(target) - others

    leaves: list[tuple[str, int | Decimal]] = [
        (LEDGER_LEAF[u], int(q) if u != "transcription_second" else q) for u, q in quantities.items()
    ]
    gap = None
    if spec.citations and rng.random() < 0.3:
        citations = rng.randint(1, 5_000)
        quantities["output_token"] = quantities.get("output_token", Decimal(0)) + citations
        leaves.append(("output_text_citation_tokens", citations))
        gap = "citation_tokens"
    for unit in spec.per_call:
        quantities[unit] = Decimal(1)
        scenarios.add(unit)

    context = sum(q for u, q in quantities.items() if u in INPUT_UNITS)
    event = {
        "event_id": f"genai-{index:05d}",
        "occurred_at": occurred_at.isoformat(),
        "provider": spec.provider,
        "model": name,
        "service_tier": service_tier,
        "quantities": {unit: str(q) for unit, q in quantities.items()},
        "team": "platform",
        "feature": "pricing-check",
        "environment": "test",
    }
    if context:
        event["context_tokens"] = int(context)
    if "tool_call" in quantities:
        event["tier"] = "web_search"

    if spec.provider == "groq" and spec.model == "whisper-large-v3" and quantities["transcription_second"] < 10:
        gap = "groq_whisper_minimum"

    in_force = info.get_prices(occurred_at, price_context)
    scenarios |= _scenarios(quantities, context, in_force, info.get_prices(occurred_at), service_tier)
    if standard_changes and occurred_at.date() < standard_changes[-1]:
        scenarios.add("before_price_change")
    moments = {datetime.combine(d, time(), tzinfo=UTC) for d in standard_changes + variant_starts}
    if occurred_at in moments or occurred_at + timedelta(microseconds=1) in moments:
        scenarios.add("change_day_edge")
    return Draw(
        event=event,
        spec=spec,
        name=name,
        occurred_at=occurred_at,
        service_tier=service_tier,
        quantities=quantities,
        genai_usage=_nested_usage(leaves),
        price_context=price_context,
        scenarios=scenarios,
        gap=gap,
    )


def _scenarios(quantities, context, in_force: ModelPrice, standard: ModelPrice, service_tier: str) -> set[str]:
    """What a usage exercises, judged by the prices genai-prices has in force for it."""
    found = set()
    units = set(quantities)
    if "cached_input_token" in units:
        found.add("cache_read")
    if "cache_write_token" in units:
        found.add("cache_write_5m")
    if "cache_write_1h_token" in units:
        found.add("cache_write_1h")
    if units & {"audio_input_token", "cached_audio_input_token", "audio_output_token"}:
        found.add("audio")
    if units & {"image_input_token", "cached_image_input_token", "image_output_token"}:
        found.add("image")
    tiered = [value for value in in_force.__dict__.values() if isinstance(value, TieredPrices)]
    if any(context > tier.start for value in tiered for tier in value.tiers):
        found.add("long_context")
    if service_tier and in_force != standard:
        found.add("batch" if service_tier == "batch" else "flex_or_priority")
    elif service_tier:
        found.add("service_tier_priced_as_standard")
    if "reasoning_token" in units:
        found.add("reasoning")
    if "embedding_token" in units:
        found.add("embedding")
    if "transcription_second" in units:
        found.add("transcription")
    if "character" in units:
        found.add("speech_characters")
    if "tool_call" in units:
        found.add("web_search")
    return found


def _draws() -> list[Draw]:
    rng = random.Random(SEED)
    draws = []
    for round_ in range(DRAWS_PER_MODEL):
        for position, spec in enumerate(SPECS):
            draws.append(_draw(rng, spec, round_ * len(SPECS) + position))
    return draws


# --- our side --------------------------------------------------------------------


@pytest.fixture(scope="module")
def genai_price_books(django_db_setup, django_db_blocker):
    """genai-prices' list prices imported once for the module, removed after it."""
    with django_db_blocker.unblock():
        assert not Provider.objects.exists(), "the catalog must start empty"
        result = prices_import_genai()
        try:
            yield result
        finally:
            PriceBookVersion.objects.all().delete()
            PriceBook.objects.all().delete()
            ModelAlias.objects.all().delete()
            AiModel.objects.all().delete()
            Provider.objects.all().delete()


def _ingest(events: list[dict]) -> None:
    batch, results = usage_ingest_events(events=events, source_name="genai-prices comparison")
    rejected = [r for r in results if r.status != "accepted"]
    assert not rejected, rejected[:5]
    assert batch.inserted == len(events)


def _periods(moments) -> list[str]:
    return sorted({f"{m.year:04d}-{m.month:02d}" for m in moments})


def _rate_set_based(periods: list[str]) -> tuple[dict[str, Decimal], dict[str, int], list]:
    """Each event's cost through rating runs of the periods, and its unpriced line count."""
    costs: dict[str, Decimal] = defaultdict(Decimal)
    unpriced: dict[str, int] = defaultdict(int)
    runs = []
    for text in periods:
        period = Period.parse(text)
        run = usage_rate_period(period=period)
        runs.append(run)
        start, end = period.bounds
        period_cost = Decimal(0)
        with connection.cursor() as cursor:
            cursor.execute(rated_lines_sql(["event_id"]), rated_lines_params(run_id=run.pk, start=start, end=end))
            for event_id, price_id, _quantity, line_count, cost in cursor.fetchall():
                if price_id is None:
                    unpriced[event_id] += line_count
                else:
                    costs[event_id] += Decimal(str(cost))
                    period_cost += Decimal(str(cost))
        # The run's stored cost (summed before pricing) equals the lines priced one by one.
        assert abs(Decimal(str(run.cost)) - period_cost) <= TOLERANCE, (period, run.cost, period_cost)
    return costs, unpriced, runs


def _rate_one(event: dict, versions) -> tuple[Decimal, list[str]]:
    quote = rate_event(
        provider=event["provider"],
        model=event["model"],
        occurred_at=datetime.fromisoformat(event["occurred_at"]),
        quantities={unit: Decimal(q) for unit, q in event["quantities"].items()},
        service_tier=event.get("service_tier", ""),
        tier=event.get("tier", ""),
        context_tokens=event.get("context_tokens"),
        versions=versions,
    )
    return quote.total, quote.unpriced_units


# --- the comparison ----------------------------------------------------------------


@pytest.mark.django_db
def test_random_usage_rates_as_genai_prices_does(genai_price_books):
    draws = _draws()
    models = {(d.spec.provider, d.spec.model) for d in draws}
    providers = {d.spec.provider for d in draws}
    scenarios = Counter(s for d in draws for s in d.scenarios)
    gaps = Counter(d.gap for d in draws if d.gap)
    assert len(draws) >= 1000 and len(models) >= 20 and len(providers) >= 4
    short = {s: scenarios[s] for s, least in SCENARIO_MINIMUMS.items() if scenarios[s] < least}
    assert not short, f"the draw covers too few usages of {short}; all: {dict(scenarios)}"
    assert set(gaps) <= set(KNOWN_GAPS)

    _ingest([d.event for d in draws])
    costs, unpriced, runs = _rate_set_based(_periods(d.occurred_at for d in draws))
    versions = latest_price_book_versions()

    mismatches: list[str] = []
    gaps_shown: Counter = Counter()
    for draw in draws:
        event_id = draw.event["event_id"]
        try:
            theirs = _genai_price(draw)
        except Exception as exc:  # a usage genai-prices refuses is a bug in the draw
            mismatches.append(f"{draw.describe()}: genai-prices raised {type(exc).__name__}: {exc}")
            continue
        ours = costs.get(event_id, Decimal(0))
        quoted, quote_unpriced = _rate_one(draw.event, versions)
        problems = []
        if unpriced.get(event_id):
            problems.append(f"{unpriced[event_id]} unpriced line(s) in the rating run")
        if quote_unpriced:
            problems.append(f"rate_event left {quote_unpriced} unpriced")
        if abs(ours - quoted) > TOLERANCE:
            problems.append(f"rated {ours} != rate_event {quoted}")
        if draw.gap is None:
            if abs(ours - theirs) > TOLERANCE:
                problems.append(f"rated {ours} != genai-prices {theirs} (diff {ours - theirs})")
            if abs(quoted - theirs) > TOLERANCE:
                problems.append(f"rate_event {quoted} != genai-prices {theirs} (diff {quoted - theirs})")
        elif abs(ours - theirs) > TOLERANCE:
            gaps_shown[draw.gap] += 1
        if problems:
            mismatches.append(f"{draw.describe()}: {'; '.join(problems)}")

    assert not mismatches, f"{len(mismatches)} of {len(draws)} usages disagree with genai-prices:\n" + "\n".join(
        mismatches[:60]
    )
    closed = set(KNOWN_GAPS) - set(gaps_shown)
    assert not closed, f"known gaps no longer show in {dict(gaps)} usages: {closed}; remove them from KNOWN_GAPS"
    assert all(run.lines_unpriced == 0 for run in runs)
    assert sum(run.lines_rated for run in runs) == sum(len(d.quantities) for d in draws)


# --- focused cases, checked by hand ------------------------------------------------


def _event(event_id: str, provider: str, model: str, at: str, quantities: dict, **extra) -> dict:
    return {
        "event_id": event_id,
        "occurred_at": at,
        "provider": provider,
        "model": model,
        "quantities": {unit: str(q) for unit, q in quantities.items()},
        **extra,
    }


def _costs_both_ways(events: list[dict]) -> dict[str, tuple[Decimal, Decimal]]:
    """Each event's (rated, quoted) cost; every line must be priced."""
    _ingest(events)
    costs, unpriced, _runs = _rate_set_based(_periods(datetime.fromisoformat(e["occurred_at"]) for e in events))
    assert not unpriced, unpriced
    versions = latest_price_book_versions()
    both = {}
    for event in events:
        quoted, quote_unpriced = _rate_one(event, versions)
        assert not quote_unpriced, (event["event_id"], quote_unpriced)
        both[event["event_id"]] = (costs[event["event_id"]], quoted)
    return both


def _assert_costs(both: dict[str, tuple[Decimal, Decimal]], expected: dict[str, str]) -> None:
    for event_id, amount in expected.items():
        rated, quoted = both[event_id]
        assert abs(rated - Decimal(amount)) <= TOLERANCE, (event_id, "rated", rated, amount)
        assert abs(quoted - Decimal(amount)) <= TOLERANCE, (event_id, "quoted", quoted, amount)


@pytest.mark.django_db
def test_long_context_is_all_or_nothing(genai_price_books):
    """claude-sonnet-4-5: $3/$15 per MTok up to 200,000 input tokens; past it $6/$22.50 for every token.

    The request's input counts cache reads and writes, so 150,000 fresh plus
    50,001 cached tokens is past the threshold too, cached ones at $0.60.
    """
    at = "2026-05-12T10:00:00+00:00"
    events = [
        _event("below", "anthropic", "claude-sonnet-4-5", at, {"input_token": 199_999, "output_token": 1_000}),
        _event("at", "anthropic", "claude-sonnet-4-5", at, {"input_token": 200_000, "output_token": 1_000}),
        _event("above", "anthropic", "claude-sonnet-4-5", at, {"input_token": 200_001, "output_token": 1_000}),
        _event(
            "above-with-cache",
            "anthropic",
            "claude-sonnet-4-5",
            at,
            {"input_token": 150_000, "cached_input_token": 50_001, "output_token": 1_000},
        ),
    ]
    for event in events:
        event["context_tokens"] = sum(int(q) for u, q in event["quantities"].items() if u in INPUT_UNITS)
    _assert_costs(
        _costs_both_ways(events),
        {
            "below": "0.614997",  # 199,999 x 3/1M + 1,000 x 15/1M
            "at": "0.615",  # the threshold itself is still the base rate
            "above": "1.222506",  # 200,001 x 6/1M + 1,000 x 22.5/1M
            "above-with-cache": "0.9525006",  # 150,000 x 6/1M + 50,001 x 0.6/1M + 1,000 x 22.5/1M
        },
    )


@pytest.mark.django_db
def test_cached_input_is_priced_at_the_cached_rate(genai_price_books):
    """gpt-4o: input $2.50 per MTok, cached input $1.25, output $10."""
    at = "2026-05-12T10:00:00+00:00"
    events = [
        _event("fresh", "openai", "gpt-4o", at, {"input_token": 1_000_000}),
        _event("cached", "openai", "gpt-4o", at, {"cached_input_token": 1_000_000}),
        _event("mixed", "openai", "gpt-4o", at, {"input_token": 400_000, "cached_input_token": 600_000}),
    ]
    _assert_costs(_costs_both_ways(events), {"fresh": "2.5", "cached": "1.25", "mixed": "1.75"})


@pytest.mark.django_db
def test_one_hour_cache_write_costs_more_than_five_minute(genai_price_books):
    """claude-haiku-4-5: a 5-minute cache write $1.25 per MTok, a 1-hour write $2."""
    at = "2026-05-12T10:00:00+00:00"
    events = [
        _event("5m", "anthropic", "claude-haiku-4-5", at, {"cache_write_token": 1_000_000}, context_tokens=1_000_000),
        _event(
            "1h", "anthropic", "claude-haiku-4-5", at, {"cache_write_1h_token": 1_000_000}, context_tokens=1_000_000
        ),
    ]
    _assert_costs(_costs_both_ways(events), {"5m": "1.25", "1h": "2"})


@pytest.mark.django_db
def test_batch_is_cheaper_than_standard(genai_price_books):
    """gpt-4o from 2026-10-14: batch $1.25/$5 per MTok against $2.50/$10 standard."""
    at = "2026-11-02T10:00:00+00:00"
    quantities = {"input_token": 1_000_000, "output_token": 1_000_000}
    events = [
        _event("standard", "openai", "gpt-4o", at, quantities),
        _event("default", "openai", "gpt-4o", at, quantities, service_tier="default"),
        _event("batch", "openai", "gpt-4o", at, quantities, service_tier="batch"),
    ]
    _assert_costs(_costs_both_ways(events), {"standard": "12.5", "default": "12.5", "batch": "6.25"})


@pytest.mark.django_db
def test_usage_before_a_price_change_keeps_the_old_price(genai_price_books):
    """o3 cost $10/$40 per MTok until 2025-06-09 and $2/$8 from 2025-06-10 (UTC)."""
    quantities = {"input_token": 1_000_000, "output_token": 1_000_000}
    events = [
        _event("early", "openai", "o3", "2025-06-01T12:00:00+00:00", quantities),
        _event("last-moment", "openai", "o3", "2025-06-09T23:59:59.999999+00:00", quantities),
        _event("first-moment", "openai", "o3", "2025-06-10T00:00:00+00:00", quantities),
        _event("dated-name", "openai", "o3-2025-04-16", "2025-05-20T08:00:00+00:00", quantities),
    ]
    _assert_costs(
        _costs_both_ways(events), {"early": "50", "last-moment": "50", "first-moment": "10", "dated-name": "50"}
    )


@pytest.mark.django_db
def test_unknown_model_is_unpriced_never_free(genai_price_books):
    at = "2026-05-12T10:00:00+00:00"
    events = [
        _event("unknown-model", "openai", "gpt-nonexistent-9", at, {"input_token": 1_000, "output_token": 10}),
        _event("unpriced-unit", "openai", "text-embedding-3-small", at, {"character": 500}),
    ]
    _ingest(events)
    run = usage_rate_period(period=Period(2026, 5))
    rows = list(RatedUsage.objects.filter(run=run).order_by("model", "unit"))
    assert [(r.model, r.unit, r.price, r.cost) for r in rows] == [
        ("gpt-nonexistent-9", "input_token", None, None),
        ("gpt-nonexistent-9", "output_token", None, None),
        ("text-embedding-3-small", "character", None, None),
    ]
    assert run.lines_unpriced == 3 and run.lines_rated == 3 and run.cost == 0
    versions = latest_price_book_versions()
    assert _rate_one(events[0], versions) == (Decimal(0), ["input_token", "output_token"])
    assert _rate_one(events[1], versions) == (Decimal(0), ["character"])


@pytest.mark.django_db
def test_a_model_priced_by_time_of_day_stays_unpriced_not_cheap(genai_price_books):
    # genai-prices charges deepseek-chat more 00:30-16:30 UTC; our prices have no
    # time-of-day dimension yet, so the import leaves the model unpriced rather
    # than charging its off-peak price all day.
    event = _event("peak", "deepseek", "deepseek-chat", "2026-05-12T10:00:00+00:00", {"input_token": 1_000_000})
    _ingest([event])
    run = usage_rate_period(period=Period(2026, 5))
    row = RatedUsage.objects.get(run=run)
    assert (row.model, row.price, row.cost, run.lines_unpriced) == ("deepseek-chat", None, None, 1)
