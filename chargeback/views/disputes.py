"""Pages of disputes: the form a team member files a line's dispute with, the queue
(finance's to decide, a team's to follow), one dispute with finance's decision, and its
evidence file. Thin: the services check roles, windows and amounts again."""

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from allocation.access import Permission, access_allows, cost_center_memberships, cost_center_scope
from chargeback.choices import DisputeStatus
from chargeback.forms.disputes import DisputeDecisionForm, DisputeFileForm
from chargeback.models import Dispute
from chargeback.selectors.statements import disputes_list, statements_visible
from chargeback.services.disputes import (
    dispute_accept,
    dispute_amount_left,
    dispute_file,
    dispute_reject,
    dispute_review,
)
from pricing.errors import ApplicationError

__all__ = ["dispute_detail", "dispute_evidence", "dispute_file_view", "disputes_queue"]

_STATUSES = [("undecided", "Undecided"), *DisputeStatus.choices, ("all", "All")]
_FORM_FIELDS = {"amount", "reason", "evidence_file", "counterpart"}


@require_http_methods(["GET", "POST"])
def dispute_file_view(request: HttpRequest, statement_id: int, line_id: int) -> HttpResponse:
    # Only the statements one is a member of: finance sees every one, but files for its own.
    statements = cost_center_memberships(request.user).filter(statements_visible(request.user))
    statement = get_object_or_404(statements, pk=statement_id)
    line = get_object_or_404(statement.lines, pk=line_id)
    form = DisputeFileForm(request.POST or None, request.FILES or None, initial={"amount": dispute_amount_left(line)})
    if request.method == "POST" and form.is_valid():
        try:
            dispute = dispute_file(
                line=line,
                actor=request.user,
                amount=form.cleaned_data["amount"],
                reason=form.cleaned_data["reason"],
                evidence_ids=form.cleaned_data["evidence_ids"],
                evidence_file=form.cleaned_data["evidence_file"],
                counterpart=form.cleaned_data["counterpart"],
            )
        except ApplicationError as exc:
            field = exc.extra.get("field")
            form.add_error(field if field in _FORM_FIELDS else None, exc.message)
        else:
            messages.success(
                request, f"Dispute #{dispute.pk} is filed; finance decides it by {dispute.due_at:%Y-%m-%d}."
            )
            return redirect("dispute", dispute_id=dispute.pk)
    status = 400 if request.method == "POST" else 200
    return render(
        request, "chargeback/dispute_file.html", {"statement": statement, "line": line, "form": form}, status=status
    )


@require_GET
def disputes_queue(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "undecided")
    if status not in {"undecided", "all", *DisputeStatus.values}:
        status = "undecided"
    # The API's `GET /api/v1/disputes` filters (DisputeFilterSet), on the page too.
    filters = {name: request.GET[name] for name in ("period", "cost_center") if request.GET.get(name)}
    try:
        disputes = disputes_list(scope=cost_center_scope(request.user), status=status, filters=filters)
    except ApplicationError as exc:
        context = {"error": exc.message, "disputes": [], "status": status, "statuses": _STATUSES}
        return render(request, "chargeback/disputes.html", context, status=400)
    context = {
        "disputes": disputes,
        "status": status,
        "statuses": _STATUSES,
        "overdue": sum(1 for d in disputes if d.overdue),
    }
    return render(request, "chargeback/disputes.html", context)


def _visible(request: HttpRequest, dispute_id: int) -> Dispute:
    disputes = cost_center_scope(request.user).filter(Dispute.objects.all())
    return get_object_or_404(
        disputes.select_related("statement", "line", "cost_center", "filed_by", "decided_by", "counterpart"),
        pk=dispute_id,
    )


@require_http_methods(["GET", "POST"])
def dispute_detail(request: HttpRequest, dispute_id: int) -> HttpResponse:
    """One dispute; finance takes it up, accepts or rejects it here."""
    dispute = _visible(request, dispute_id)
    form = DisputeDecisionForm(request.POST or None, initial={"counterpart": dispute.counterpart})
    if request.method == "POST":
        try:
            if request.POST.get("action") == "review":
                dispute_review(dispute=dispute, actor=request.user)
                messages.success(request, f"Dispute #{dispute.pk} is under review.")
                return redirect("dispute", dispute_id=dispute.pk)
            if form.is_valid():
                data = form.cleaned_data
                if data["decision"] == "accept":
                    dispute_accept(
                        dispute=dispute, actor=request.user, reason=data["reason"], counterpart=data["counterpart"]
                    )
                else:
                    dispute_reject(dispute=dispute, actor=request.user, reason=data["reason"])
                messages.success(request, f"Dispute #{dispute.pk} is {data['decision']}ed; the filer is told by email.")
                return redirect("dispute", dispute_id=dispute.pk)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
    context = {
        "dispute": dispute,
        "form": form,
        "may_decide": access_allows(request.user, Permission.RESOLVE_DISPUTE),
        "adjustments": dispute.adjustments.select_related("cost_center"),
    }
    return render(request, "chargeback/dispute.html", context, status=400 if form.errors else 200)


@require_GET
def dispute_evidence(request: HttpRequest, dispute_id: int) -> FileResponse:
    dispute = _visible(request, dispute_id)
    if not dispute.evidence_file:
        raise Http404("this dispute has no evidence file")
    name = dispute.evidence_file.name.rsplit("/", 1)[-1]
    return FileResponse(dispute.evidence_file.open("rb"), as_attachment=True, filename=name)
