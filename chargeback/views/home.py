"""The web UI's entry page: where each role starts."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from allocation.access import Permission, access_allows, cost_center_scope
from allocation.selectors.runs import allocation_run_latest

__all__ = ["home"]


def home(request: HttpRequest) -> HttpResponse:
    """Finance and the platform team start at usage; a team member at their cost centers'
    share of the latest allocation run; a user with no role is told whom to ask."""
    if access_allows(request.user, Permission.VIEW_COMPANY):
        return redirect("usage-overview")
    scope = cost_center_scope(request.user)
    run = allocation_run_latest() if access_allows(request.user, Permission.VIEW_SPEND) and scope.ids else None
    if run is not None:
        return redirect("allocation-run", run_id=run.pk)
    context = {"has_role": access_allows(request.user, Permission.VIEW_SPEND), "has_cost_centers": bool(scope.ids)}
    return render(request, "chargeback/home_waiting.html", context)
