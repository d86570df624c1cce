"""The organization page: cost centers as a roll-up tree with their teams and features; tenants."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from allocation.models import Tenant
from allocation.selectors.org import cost_center_tree

__all__ = ["organization"]


@login_required
@require_GET
def organization(request: HttpRequest) -> HttpResponse:
    context = {
        "cost_centers": cost_center_tree(),
        "tenants": Tenant.objects.all(),
        "today": timezone.now().date(),
    }
    return render(request, "allocation/org/organization.html", context)
