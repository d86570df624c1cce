"""Reads of the close: a month's statements, one statement's sections, the calls behind
a line, a parent's roll-up, and the dispute queue. Aggregation is in SQL; Python only
shapes the few hundred rows a statement holds."""

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from allocation.access import CostCenterScope, cost_center_scope
from allocation.choices import Environment
from allocation.models import AllocationRun, CostCenter, ReconciliationLine, UsageLine
from chargeback.choices import LIVE_STATUSES, UNDECIDED_DISPUTES, PeriodStatus, StatementLineKind
from chargeback.filtersets import DisputeFilterSet, StatementFilterSet
from chargeback.models import AccountingPeriod, Dispute, ReconciliationOverride, Statement, StatementLine
from chargeback.models.statements import LIVE_STATEMENTS
from pricing.csv_export import csv_lines
from pricing.errors import ValidationFailed
from pricing.money import quantize
from pricing.periods import Period

__all__ = [
    "STATEMENT_LINE_HEADER",
    "STATEMENT_UNIT_COST_HEADER",
    "UNIT_COSTS_SHOWN",
    "CallsPage",
    "disputes_counts",
    "disputes_list",
    "disputes_visible",
    "filtered",
    "period_status",
    "statement_calls",
    "statement_file_name",
    "statement_line_rows",
    "statement_pdf_lines",
    "statement_reconciliation",
    "statement_lines_csv",
    "statement_rollup",
    "statement_sections",
    "statement_unit_cost_rows",
    "statement_unit_costs_csv",
    "statements_count_by_status",
    "statements_of_period",
    "statements_visible",
]

TOP_FEATURES = 5
# Production apart from the rest: eval, staging, development and internal traffic.
PRODUCTION = Environment.PRODUCTION


def period_status(*, period: Period) -> str:
    row = AccountingPeriod.objects.filter(period=str(period)).values_list("status", flat=True).first()
    return row or PeriodStatus.OPEN


def statements_visible(actor) -> QuerySet[Statement]:
    """The statements an actor may see: every one for finance and the platform team, their
    own cost centers' (and those below the ones they own) for a team member. Every
    revision: a reopened one is still read (lists leave it out through the filter set)."""
    statements = Statement.objects.select_related("cost_center", "run", "approved_by", "reopened_by", "replaced_by")
    return cost_center_scope(actor).filter(statements)


def filtered(filterset_class, data: Mapping, queryset: QuerySet) -> QuerySet:
    """The rows a shared FilterSet keeps; filters it can't read are a 400 naming them."""
    filterset = filterset_class(data, queryset=queryset)
    if not filterset.is_valid():
        errors = {name: [str(e) for e in messages] for name, messages in filterset.errors.items()}
        raise ValidationFailed(f"invalid filters: {', '.join(sorted(errors))}", extra={"fields": errors})
    return filterset.qs


def statements_of_period(*, period: Period, scope: CostCenterScope, filters: Mapping | None = None) -> list[Statement]:
    """The month's statements in scope, narrowed by `StatementFilterSet` (status, cost
    center; live revisions unless `include_superseded`), each with its undecided disputes
    counted."""
    statements = scope.filter(Statement.objects.all())
    statements = filtered(StatementFilterSet, {**(filters or {}), "period": str(period)}, statements)
    return list(
        statements.select_related("cost_center", "approved_by")
        .annotate(open_disputes=Count("disputes", filter=Q(disputes__status__in=UNDECIDED_DISPUTES)))
        .order_by("cost_center__code")
    )


def statement_file_name(statement: Statement, extension: str) -> str:
    """The one name a statement's files go by: its downloads, its API CSV, its stored PDF.
    A reopened statement's later revisions say which they are (`-r2`)."""
    revision = f"-r{statement.revision}" if statement.revision > 1 else ""
    return f"statement-{statement.cost_center.code}-{statement.period}{revision}.{extension}"


def statements_count_by_status(*, period: Period, scope: CostCenterScope) -> dict[str, int]:
    """How many of the month's live statements in scope stand at each status (every status
    but superseded named, 0 where none): the dashboard's close panel, counted in the database."""
    live = Statement.objects.filter(LIVE_STATEMENTS, period=str(period))
    rows = scope.filter(live).values("status").annotate(n=Count("id"))
    counts = dict.fromkeys(LIVE_STATUSES, 0)
    counts.update({row["status"]: row["n"] for row in rows.order_by()})
    return counts


def _sum_by(lines: QuerySet, *fields: str) -> list[dict]:
    return list(lines.values(*fields).annotate(amount=Sum("amount"), calls=Sum("line_count")).order_by("-amount"))


def statement_sections(*, statement: Statement) -> dict:
    """Everything a statement page shows beside its lines: spend by modality, by provider
    and model, production apart from the rest, top features per modality, cost per
    request and per trace by feature, owned unallocated by reason, prior-period
    corrections, adjustments and disputes, and the month before."""
    lines = statement.lines.all()
    charges = lines.filter(kind=StatementLineKind.CHARGE)
    by_feature = _sum_by(charges, "team", "feature", "environment", "modality")
    top: dict[str, list[dict]] = defaultdict(list)
    for row in by_feature:
        if len(top[row["modality"]]) < TOP_FEATURES:
            top[row["modality"]].append(row)
    counts = {(f.team, f.feature, f.environment): f for f in statement.features.all()}
    per_feature: dict[tuple, Decimal] = defaultdict(Decimal)
    for row in by_feature:
        per_feature[(row["team"], row["feature"], row["environment"])] += row["amount"] or 0
    unit_costs = []
    for key, amount in sorted(per_feature.items(), key=lambda item: -item[1]):
        stats = counts.get(key)
        requests, traces = (stats.requests, stats.traces) if stats else (0, 0)
        unit_costs.append(
            {
                "team": key[0],
                "feature": key[1],
                "environment": key[2],
                "amount": amount,
                "requests": requests,
                "traces": traces,
                "per_request": amount / requests if requests else None,
                "per_trace": amount / traces if traces else None,
            }
        )
    environments = _sum_by(charges, "environment")
    production = sum((r["amount"] or 0 for r in environments if r["environment"] == PRODUCTION), Decimal(0))
    return {
        "by_modality": _sum_by(charges, "modality"),
        "by_provider": _sum_by(charges, "provider", "model"),
        "by_environment": environments,
        "production": production,
        "non_production": sum((r["amount"] or 0 for r in environments), Decimal(0)) - production,
        "by_treatment": _sum_by(lines.exclude(kind=StatementLineKind.UNALLOCATED), "treatment"),
        "top_features": dict(top),
        "unit_costs": unit_costs,
        "unallocated": _sum_by(lines.filter(kind=StatementLineKind.UNALLOCATED), "reason", "provider"),
        "corrections": list(lines.filter(kind=StatementLineKind.CORRECTION).order_by("source_period", "-amount")),
        "adjustments": list(lines.filter(kind=StatementLineKind.ADJUSTMENT).order_by("source_period", "id")),
        "disputes": list(
            statement.disputes.select_related("line", "filed_by", "decided_by", "counterpart").order_by("-filed_at")
        ),
        "override": ReconciliationOverride.objects.filter(run=statement.run).select_related("overridden_by").first(),
    }


STATEMENT_LINE_HEADER = [
    "period",
    "cost_center",
    "statement_status",
    "line",
    "kind",
    "source_period",
    "provider",
    "model",
    "modality",
    "team",
    "feature",
    "environment",
    "treatment",
    "category",
    "method",
    "unallocated_reason",
    "description",
    "unit",
    "quantity",
    "ledger_lines",
    "amount",
    "currency",
]


def statement_line_rows(*, statement: Statement) -> Iterator[list]:
    """The statement's lines as rows under STATEMENT_LINE_HEADER: the CSV download, the
    XLSX's Lines sheet and the CSV embedded in the signed PDF are all these rows."""
    for line in statement.lines.all().order_by("kind", "-amount", "id").iterator(chunk_size=2000):
        yield [
            statement.period,
            statement.cost_center.code,
            statement.status,
            line.pk,
            line.kind,
            line.source_period,
            line.provider,
            line.model,
            line.modality,
            line.team,
            line.feature,
            line.environment,
            line.treatment,
            line.category,
            line.method,
            line.reason,
            line.description,
            line.unit,
            line.quantity.normalize() if line.quantity else Decimal(0),
            line.line_count,
            line.amount,
            statement.currency,
        ]


# The unit costs a statement's page and PDF show at first: its largest features; every
# feature is on the page with ?features=all, in the XLSX and in the PDF's attached CSV.
UNIT_COSTS_SHOWN = 25

_UNIT_COST_QUANTUM = Decimal("0.000001")

STATEMENT_UNIT_COST_HEADER = [
    "period",
    "cost_center",
    "team",
    "feature",
    "environment",
    "amount",
    "requests",
    "cost_per_request",
    "traces",
    "cost_per_trace",
]


def statement_unit_cost_rows(*, statement: Statement, unit_costs: list[dict] | None = None) -> Iterator[list]:
    """Cost per request and per trace of every feature (`statement_sections`' unit costs,
    largest first) as rows under STATEMENT_UNIT_COST_HEADER: the XLSX's sheet and the CSV
    embedded in the signed PDF; a cost per request or trace to the millionth of the
    currency (a call costs fractions of a cent)."""
    if unit_costs is None:
        unit_costs = statement_sections(statement=statement)["unit_costs"]
    for row in unit_costs:
        yield [
            statement.period,
            statement.cost_center.code,
            row["team"],
            row["feature"],
            row["environment"],
            row["amount"],
            row["requests"],
            "" if row["per_request"] is None else quantize(row["per_request"], _UNIT_COST_QUANTUM),
            row["traces"],
            "" if row["per_trace"] is None else quantize(row["per_trace"], _UNIT_COST_QUANTUM),
        ]


def statement_unit_costs_csv(*, statement: Statement, unit_costs: list[dict] | None = None) -> bytes:
    """The unit costs CSV as bytes (the one CSV writer, UTF-8)."""
    rows = statement_unit_cost_rows(statement=statement, unit_costs=unit_costs)
    return "".join(csv_lines([STATEMENT_UNIT_COST_HEADER, *rows])).encode("utf-8")


def statement_lines_csv(*, statement: Statement) -> bytes:
    """The lines CSV as bytes, exactly as the download streams it (the one CSV writer, UTF-8)."""
    return "".join(csv_lines([STATEMENT_LINE_HEADER, *statement_line_rows(statement=statement)])).encode("utf-8")


# The order of the kinds of line in a signed statement PDF: this month's charges first.
_PDF_KIND_ORDER = (
    StatementLineKind.CHARGE,
    StatementLineKind.UNALLOCATED,
    StatementLineKind.CORRECTION,
    StatementLineKind.ADJUSTMENT,
)


def statement_pdf_lines(*, statement: Statement) -> list[dict]:
    """Every line of a statement, grouped by kind (charges, owned unallocated, corrections,
    adjustments), largest first, each group with its count and subtotal: the PDF's detail."""
    by_kind: dict[str, list[StatementLine]] = defaultdict(list)
    for line in statement.lines.all().order_by("-amount", "id"):
        # Who and why in one cell: team, feature, the bucket's reason, the adjustment's
        # description, and the month a correction or adjustment belongs to.
        month = f"for {line.source_period}" if line.source_period != statement.period else ""
        line.who = " · ".join(filter(None, (line.team, line.feature, line.reason, line.description, month))) or "—"
        by_kind[line.kind].append(line)
    labels = dict(StatementLineKind.choices)
    return [
        {
            "kind": kind,
            "label": labels[kind],
            "lines": by_kind[kind],
            "subtotal": sum((line.amount for line in by_kind[kind]), Decimal(0)),
        }
        for kind in _PDF_KIND_ORDER
        if by_kind.get(kind)
    ]


def statement_reconciliation(*, statement: Statement) -> list[ReconciliationLine]:
    """The reconciliation of the statement's run, per provider (rated usage against the
    invoice), as the run recorded it."""
    return list(ReconciliationLine.objects.filter(run_id=statement.run_id, model="").order_by("provider"))


@dataclass(frozen=True)
class CallsPage:
    """One page of the ledger lines behind a statement line, newest first, and the
    cursor of the next page (None on the last)."""

    calls: list[UsageLine]
    next_cursor: str | None


# What a statement line and the ledger lines behind it share, beside the month.
_LINE_TAGS = ("provider", "model", "team", "feature", "environment", "modality")


def _line_calls(line: StatementLine) -> QuerySet[UsageLine]:
    """The ledger lines behind a statement line: its month, provider, model and tags."""
    start, end = Period.parse(line.source_period).bounds
    tags = {tag: getattr(line, tag) for tag in _LINE_TAGS}
    return UsageLine.objects.filter(occurred_at__gte=start, occurred_at__lt=end, **tags)


# A trace's lines looked up first by the trace alone, up to this many; a larger trace
# (ids reused by a misconfigured client) is filtered in the one query instead.
_TRACE_LINES_LOOKED_UP = 10_000


def _trace_calls(line: StatementLine, trace: str) -> QuerySet[UsageLine]:
    """The line's calls of one trace. A trace is a handful of lines: found by the month's
    trace index, matched to the line's tags here, then read by their keys. Asked in one
    query with the line's tags, PostgreSQL costed the tag index on its columns' own
    selectivities and walked a 63,639-call line to find 3 (120-180 ms instead of under
    1 ms, bench/close), even given the trace's keys."""
    start, end = Period.parse(line.source_period).bounds
    of_trace = UsageLine.objects.filter(occurred_at__gte=start, occurred_at__lt=end, trace_id=trace)
    rows = list(of_trace.values_list("event_key", *_LINE_TAGS)[: _TRACE_LINES_LOOKED_UP + 1])
    if len(rows) > _TRACE_LINES_LOOKED_UP:
        return _line_calls(line).filter(trace_id=trace)
    tags = tuple(getattr(line, tag) for tag in _LINE_TAGS)
    return UsageLine.objects.filter(event_key__in=[key for key, *values in rows if tuple(values) == tags])


def statement_calls(*, line: StatementLine, trace: str = "", cursor: str = "", limit: int = 50) -> CallsPage:
    """A page of the calls behind a line (or one trace of it), keyset-paged by time so
    that a page costs the same on the first and the thousandth page."""
    calls = _trace_calls(line, trace) if trace else _line_calls(line)
    if cursor:
        moment, _, key = cursor.partition("|")
        try:
            at = datetime.fromisoformat(moment)
        except ValueError:
            at = None
        if at is not None and key:
            # The plain bound lets the index start at the cursor; the OR keeps ties in order.
            calls = calls.filter(occurred_at__lte=at).filter(
                Q(occurred_at__lt=at) | Q(occurred_at=at, event_key__lt=key)
            )
    rows = list(calls.order_by("-occurred_at", "-event_key")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    return CallsPage(calls=rows, next_cursor=f"{last.occurred_at.isoformat()}|{last.event_key}" if last else None)


def statement_rollup(*, cost_center: CostCenter, period: Period, scope: CostCenterScope) -> dict:
    """A parent's roll-up: its own statement and those of every cost center below it that
    the actor may see, summed by modality and by cost center."""
    children: dict[int, list[int]] = defaultdict(list)
    for pk, parent in CostCenter.objects.filter(parent__isnull=False).values_list("pk", "parent_id"):
        children[parent].append(pk)
    tree, pending = {cost_center.pk}, [cost_center.pk]
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in tree:
                tree.add(child)
                pending.append(child)
    statements = scope.filter(
        Statement.objects.filter(LIVE_STATEMENTS, period=str(period), cost_center__in=tree).select_related(
            "cost_center"
        )
    ).order_by("cost_center__code")
    lines = StatementLine.objects.filter(statement__in=statements)
    totals = statements.aggregate(
        total=Sum("total"), chargeback=Sum("chargeback"), showback=Sum("showback"), previous=Sum("previous_total")
    )
    return {
        "statements": list(statements),
        "totals": {key: value or Decimal(0) for key, value in totals.items()},
        "by_modality": _sum_by(lines.exclude(kind=StatementLineKind.UNALLOCATED), "modality"),
    }


def disputes_visible(*, scope: CostCenterScope) -> QuerySet[Dispute]:
    """The disputes of the cost centers in scope, with what a list shows of each."""
    return scope.filter(Dispute.objects.all()).select_related(
        "statement", "line", "cost_center", "filed_by", "decided_by", "counterpart"
    )


def disputes_list(
    *, scope: CostCenterScope, status: str = "", now: datetime | None = None, filters: Mapping | None = None
) -> list[Dispute]:
    """Disputes in scope narrowed by `DisputeFilterSet` (`status` may be `undecided`),
    undecided first and the oldest due first; each marked `overdue` when undecided past
    its SLA."""
    now = now or timezone.now()
    data = {**(filters or {}), **({"status": status} if status else {})}
    disputes = filtered(DisputeFilterSet, data, disputes_visible(scope=scope))
    rows = sorted(disputes, key=lambda d: (d.status not in UNDECIDED_DISPUTES, d.due_at, d.pk))
    for dispute in rows:
        dispute.overdue = dispute.status in UNDECIDED_DISPUTES and dispute.due_at < now
    return rows


def disputes_counts(*, scope: CostCenterScope, now: datetime | None = None) -> dict[str, int]:
    """The undecided disputes in scope, and those of them past their SLA, counted in the
    database (the queue's `overdue`, without loading each dispute)."""
    now = now or timezone.now()
    undecided = scope.filter(Dispute.objects.filter(status__in=UNDECIDED_DISPUTES))
    return undecided.aggregate(open=Count("id"), overdue=Count("id", filter=Q(due_at__lt=now)))


def period_runs_needing_override(*, period: Period) -> list[AllocationRun]:
    """The month's flagged runs with statements and no override yet."""
    # EXISTS, not a join and DISTINCT: the join repeats each run (and its inputs) once
    # per statement, 200 rows to sort and compare for one.
    has_statements = Exists(Statement.objects.filter(run=OuterRef("pk")))
    return list(
        AllocationRun.objects.filter(
            has_statements, period=str(period), is_flagged=True, override__isnull=True
        ).order_by("-created_at")
    )


def dispute_window_days() -> int:
    return settings.CHARGEBACK_DISPUTE_WINDOW_DAYS


__all__ += ["dispute_window_days", "period_runs_needing_override"]
