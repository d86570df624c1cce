"""Pages of the monthly close: the month's statements and its actions, one statement
with its sections and lines, the calls behind a line, a parent's roll-up, and the
downloads. Thin: reads through `chargeback.selectors.statements`, changes through the
services, which check roles again; the access rule of each URL is in allocation/access.py.
"""

from collections.abc import Callable
from decimal import Decimal

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from allocation.access import Permission, access_allows, cost_center_memberships, cost_center_scope
from allocation.models import AllocationRun, CostCenter
from allocation.selectors.runs import allocation_run_current, allocation_run_latest
from allocation.views.ledger import csv_download
from chargeback.choices import SIGNED_STATUSES, StatementLineKind, StatementPdfStatus, StatementStatus
from chargeback.forms.disputes import ReasonForm
from chargeback.models import StatementPdf
from chargeback.selectors.journals import journal_entries_of_statement
from chargeback.selectors.statements import (
    STATEMENT_LINE_HEADER,
    STATEMENT_UNIT_COST_HEADER,
    UNIT_COSTS_SHOWN,
    dispute_window_days,
    period_runs_needing_override,
    period_status,
    statement_calls,
    statement_file_name,
    statement_line_rows,
    statement_rollup,
    statement_sections,
    statement_unit_cost_rows,
    statements_of_period,
    statements_visible,
)
from chargeback.services.disputes import dispute_window_end
from chargeback.services.periods import period_close, period_reopen, reconciliation_override
from chargeback.services.statements import (
    statement_approve,
    statement_content_hash,
    statement_reopen,
    statement_return,
    statement_submit,
    statements_approve_period,
    statements_build,
    statements_submit_period,
)
from pricing.csv_export import XLSX_CONTENT_TYPE, xlsx_bytes
from pricing.errors import ApplicationError
from pricing.periods import Period

__all__ = [
    "period_close_view",
    "period_reopen_view",
    "reconciliation_override_view",
    "statement_approve_view",
    "statement_csv",
    "statement_detail",
    "statement_line_detail",
    "statement_pdf",
    "statement_reopen_view",
    "statement_return_view",
    "statement_rollup_view",
    "statement_submit_view",
    "statement_xlsx",
    "statements_approve_view",
    "statements_build_view",
    "statements_period",
    "statements_submit_view",
]

LINES_PER_PAGE = 100
CALLS_PER_PAGE = 50


def _period_of(request: HttpRequest) -> Period:
    """The month asked for, else the latest with a run, else this one."""
    text = (request.GET.get("period") or request.POST.get("period") or "").strip()
    if text:
        return Period.parse(text)
    latest = allocation_run_latest()
    return Period.parse(latest.period) if latest else Period.current()


def _act(request: HttpRequest, action: Callable[[], object], *, done: str, back: str) -> HttpResponse:
    """Call a service; say what happened (or the service's refusal, word for word) and go back."""
    try:
        action()
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect(back)


def _close_url(period: Period | str) -> str:
    return f"{reverse('statements')}?period={period}"


@require_GET
def statements_period(request: HttpRequest) -> HttpResponse:
    """The month's close: every statement's status, the run behind them, the actions."""
    scope = cost_center_scope(request.user)
    try:
        period = _period_of(request)
        # The API's `GET /api/v1/statements` filters (StatementFilterSet), on the page too.
        filters = {name: request.GET[name] for name in ("status", "cost_center") if request.GET.get(name)}
        statements = statements_of_period(period=period, scope=scope, filters=filters)
    except ApplicationError as exc:
        return render(request, "chargeback/statements.html", {"error": exc.message}, status=400)
    counts = {status: 0 for status in StatementStatus.values}
    for statement in statements:
        counts[statement.status] += 1
    run = allocation_run_current(period=period)
    context = {
        "period": period,
        "previous_period": period.previous,
        "next_period": period.next,
        "status": period_status(period=period),
        "statements": statements,
        "counts": counts,
        "total": sum((s.total for s in statements), Decimal(0)),
        "run": run,
        "needs_override": period_runs_needing_override(period=period),
        "company": scope.is_everything,
        "reason_form": ReasonForm(),
    }
    return render(request, "chargeback/statements.html", context)


@require_POST
def statements_build_view(request: HttpRequest) -> HttpResponse:
    period = _period_of(request)
    return _act(
        request,
        lambda: statements_build(period=period, actor=request.user),
        done=f"The statements of {period} are up to date with its current allocation run.",
        back=_close_url(period),
    )


@require_POST
def statements_submit_view(request: HttpRequest) -> HttpResponse:
    period = _period_of(request)
    return _act(
        request,
        lambda: statements_submit_period(period=period, actor=request.user),
        done=f"Every draft of {period} is out for review.",
        back=_close_url(period),
    )


@require_http_methods(["GET", "POST"])
def statements_approve_view(request: HttpRequest) -> HttpResponse:
    """Sign off every statement of the month in review, after a confirmation."""
    period = _period_of(request)
    if request.method == "POST":
        return _act(
            request,
            lambda: statements_approve_period(period=period, actor=request.user),
            done=f"Every statement of {period} that was in review is signed off.",
            back=_close_url(period),
        )
    pending = [
        s for s in statements_of_period(period=period, scope=cost_center_scope(request.user)) if s.status == "in_review"
    ]
    context = {
        "period": period,
        "statements": pending,
        "total": sum((s.total for s in pending), Decimal(0)),
        "needs_override": period_runs_needing_override(period=period),
    }
    return render(request, "chargeback/statements_approve.html", context)


@require_POST
def reconciliation_override_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(AllocationRun, pk=run_id)
    form = ReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    return _act(
        request,
        lambda: reconciliation_override(run=run, actor=request.user, reason=reason),
        done=f"Run #{run.pk}'s reconciliation is overridden: its statements may be signed off.",
        back=_close_url(run.period),
    )


@require_POST
def period_close_view(request: HttpRequest) -> HttpResponse:
    period = _period_of(request)
    return _act(
        request,
        lambda: period_close(period=period, actor=request.user),
        done=f"{period} is closed.",
        back=_close_url(period),
    )


@require_POST
def period_reopen_view(request: HttpRequest) -> HttpResponse:
    period = _period_of(request)
    form = ReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    return _act(
        request,
        lambda: period_reopen(period=period, actor=request.user, reason=reason),
        done=f"{period} is reopened.",
        back=_close_url(period),
    )


# --- one statement --------------------------------------------------------------------


def _statement(request: HttpRequest, statement_id: int):
    return get_object_or_404(statements_visible(request.user), pk=statement_id)


def _may_dispute(request: HttpRequest, statement) -> bool:
    if not access_allows(request.user, Permission.FILE_DISPUTE):
        return False
    if not cost_center_memberships(request.user).includes(statement.cost_center_id):
        return False  # seen (finance sees them all), but not one's own to dispute
    if statement.status == StatementStatus.IN_REVIEW:
        return True
    end = dispute_window_end(statement)
    return statement.status in SIGNED_STATUSES and end is not None and timezone.now() <= end


@require_GET
def statement_detail(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = _statement(request, statement_id)
    lines = statement.lines.all().order_by("kind", "-amount", "id")
    kind = request.GET.get("kind", "")
    if kind in StatementLineKind.values:
        lines = lines.filter(kind=kind)
    page = Paginator(lines, LINES_PER_PAGE).get_page(request.GET.get("page"))
    sections = statement_sections(statement=statement)
    every_feature = request.GET.get("features") == "all"
    context = {
        "statement": statement,
        "sections": sections,
        # The largest features first; a cost center with hundreds opens the rest on request.
        "unit_costs": sections["unit_costs"] if every_feature else sections["unit_costs"][:UNIT_COSTS_SHOWN],
        "unit_costs_count": len(sections["unit_costs"]),
        "page": page,
        "kind": kind,
        "kinds": StatementLineKind.choices,
        "may_dispute": _may_dispute(request, statement),
        "window_end": dispute_window_end(statement),
        "window_days": dispute_window_days(),
        "hash_holds": statement.content_hash == statement_content_hash(statement) if statement.content_hash else None,
        "pdf": StatementPdf.objects.filter(statement=statement).first(),
        "reason_form": ReasonForm(),
        "journal_entries": journal_entries_of_statement(statement=statement),
        "replaced_by": getattr(statement, "replaced_by", None),
    }
    return render(request, "chargeback/statement.html", context)


@require_POST
def statement_submit_view(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = _statement(request, statement_id)
    return _act(
        request,
        lambda: statement_submit(statement=statement, actor=request.user),
        done=f"{statement.cost_center.code}'s statement is out for review.",
        back=reverse("statement", args=[statement.pk]),
    )


@require_POST
def statement_return_view(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = _statement(request, statement_id)
    form = ReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    return _act(
        request,
        lambda: statement_return(statement=statement, actor=request.user, reason=reason),
        done=f"{statement.cost_center.code}'s statement is back in draft.",
        back=reverse("statement", args=[statement.pk]),
    )


@require_http_methods(["GET", "POST"])
def statement_approve_view(request: HttpRequest, statement_id: int) -> HttpResponse:
    """Sign a statement off, after a confirmation that shows what is being signed."""
    statement = _statement(request, statement_id)
    if request.method == "POST":
        return _act(
            request,
            lambda: statement_approve(statement=statement, actor=request.user),
            done=f"{statement.cost_center.code}'s statement for {statement.period} is signed off.",
            back=reverse("statement", args=[statement.pk]),
        )
    context = {
        "statement": statement,
        "content_hash": statement_content_hash(statement),
        "needs_override": period_runs_needing_override(period=Period.parse(statement.period)),
    }
    return render(request, "chargeback/statement_approve.html", context)


@require_http_methods(["GET", "POST"])
def statement_reopen_view(request: HttpRequest, statement_id: int) -> HttpResponse:
    """Reopen a signed-off statement as a new revision, after a confirmation that says what
    follows and takes the reason; then the new revision's page."""
    statement = _statement(request, statement_id)
    form = ReasonForm(request.POST or None)
    if request.method == "POST":
        reason = form.cleaned_data["reason"] if form.is_valid() else ""
        try:
            revision = statement_reopen(statement=statement, actor=request.user, reason=reason)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return redirect(reverse("statement-reopen", args=[statement.pk]))
        messages.success(
            request,
            f"{statement.cost_center.code}'s statement for {statement.period} is reopened: revision "
            f"{revision.revision} is a draft, its journal entries are reversed.",
        )
        return redirect(reverse("statement", args=[revision.pk]))
    context = {
        "statement": statement,
        "form": form,
        "journal_entries": journal_entries_of_statement(statement=statement),
        "period_status": period_status(period=Period.parse(statement.period)),
    }
    return render(request, "chargeback/statement_reopen.html", context)


def _statement_summary_rows(statement) -> list[list]:
    rows = [
        ["cost_center", statement.cost_center.code],
        ["cost_center_name", statement.cost_center.name],
        ["period", statement.period],
        ["status", statement.status],
        ["allocation_run", statement.run_id],
        ["run_fingerprint", statement.run.fingerprint],
        ["currency", statement.currency],
    ]
    for field in ("total", "chargeback", "showback", "unallocated", "corrections", "adjustments", "previous_total"):
        rows.append([field, getattr(statement, field)])
    rows.append(["approved_by", statement.approved_by.get_username() if statement.approved_by else ""])
    rows.append(["approved_at", statement.approved_at.isoformat() if statement.approved_at else ""])
    rows.append(["content_sha256", statement.content_hash])
    return rows


@require_GET
def statement_csv(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = _statement(request, statement_id)
    return csv_download(
        [STATEMENT_LINE_HEADER, *statement_line_rows(statement=statement)],
        filename=statement_file_name(statement, "csv"),
    )


@require_GET
def statement_xlsx(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = _statement(request, statement_id)
    content = xlsx_bytes(
        {
            "Statement": (["field", "value"], _statement_summary_rows(statement)),
            "Lines": (STATEMENT_LINE_HEADER, statement_line_rows(statement=statement)),
            "Unit costs": (STATEMENT_UNIT_COST_HEADER, statement_unit_cost_rows(statement=statement)),
        }
    )
    response = HttpResponse(content, content_type=XLSX_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{statement_file_name(statement, "xlsx")}"'
    return response


@require_GET
def statement_pdf(request: HttpRequest, statement_id: int) -> FileResponse:
    """The signed PDF, as stored when it was made (its SHA-256 is on the statement's page)."""
    statement = _statement(request, statement_id)
    pdf = StatementPdf.objects.filter(statement=statement, status=StatementPdfStatus.READY).first()
    if pdf is None:
        raise Http404("This statement has no signed PDF yet.")
    try:
        handle = pdf.file.open("rb")
    except FileNotFoundError as exc:
        raise Http404("The statement's PDF file is missing from storage.") from exc
    response = FileResponse(
        handle, content_type="application/pdf", as_attachment=True, filename=statement_file_name(statement, "pdf")
    )
    response["X-Content-SHA256"] = pdf.sha256
    return response


@require_GET
def statement_line_detail(request: HttpRequest, statement_id: int, line_id: int) -> HttpResponse:
    """The calls behind a statement line (or one trace of it), newest first, keyset-paged."""
    statement = _statement(request, statement_id)
    line = get_object_or_404(statement.lines, pk=line_id)
    trace = request.GET.get("trace", "")[:128]
    page = (
        statement_calls(line=line, trace=trace, cursor=request.GET.get("after", "")[:200], limit=CALLS_PER_PAGE)
        if line.kind in (StatementLineKind.CHARGE, StatementLineKind.UNALLOCATED, StatementLineKind.CORRECTION)
        else None
    )
    context = {
        "statement": statement,
        "line": line,
        "trace": trace,
        "page": page,
        "may_dispute": _may_dispute(request, statement),
        "disputes": line.disputes.select_related("filed_by").order_by("-filed_at"),
    }
    return render(request, "chargeback/statement_line.html", context)


@require_GET
def statement_rollup_view(request: HttpRequest, code: str) -> HttpResponse:
    """A parent cost center's roll-up: its statement and those below it."""
    scope = cost_center_scope(request.user)
    center = get_object_or_404(scope.filter(CostCenter.objects.all(), "pk"), code=code)
    try:
        period = _period_of(request)
    except ApplicationError as exc:
        return render(request, "chargeback/statements.html", {"error": exc.message}, status=400)
    context = {"center": center, "period": period, **statement_rollup(cost_center=center, period=period, scope=scope)}
    return render(request, "chargeback/statement_rollup.html", context)
