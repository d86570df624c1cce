"""The organization page: cost centers as a roll-up tree with their teams and features; tenants."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from allocation.access import Permission, access_allows, cost_center_scope
from allocation.models import Tenant
from allocation.selectors.org import cost_center_tree

__all__ = ["organization"]


@require_GET
def organization(request: HttpRequest) -> HttpResponse:
    context = {
        "cost_centers": cost_center_tree(scope=cost_center_scope(request.user)),
        "tenants": Tenant.objects.all() if access_allows(request.user, Permission.VIEW_COMPANY) else [],
        "today": timezone.now().date(),
    }
    return render(request, "allocation/org/organization.html", context)
