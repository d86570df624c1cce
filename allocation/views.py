"""Web pages of the usage ledger and cost objects."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse


@login_required
def usage_overview(request: HttpRequest) -> HttpResponse:
    return HttpResponse("usage")
