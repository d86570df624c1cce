"""The web UI's entry page: where each role starts."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from allocation.access import Permission, access_allows, cost_center_scope
from allocation.selectors.runs import allocation_run_latest
from chargeback.views.dashboard import dashboard

__all__ = ["home"]


def home(request: HttpRequest) -> HttpResponse:
    """Finance and the platform team start at the company's dashboard; a team member at
    their cost centers' dashboard once a month has been allocated; a user with no role
    or no cost center is told whom to ask."""
    if access_allows(request.user, Permission.VIEW_COMPANY):
        return dashboard(request, scope=cost_center_scope(request.user))
    scope = cost_center_scope(request.user)
    has_role = access_allows(request.user, Permission.VIEW_SPEND)
    if has_role and scope.ids and allocation_run_latest() is not None:
        return dashboard(request, scope=scope)
    context = {"has_role": has_role, "has_cost_centers": bool(scope.ids)}
    return render(request, "chargeback/home_waiting.html", context)
