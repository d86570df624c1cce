"""Web pages of the usage ledger and cost objects.

Views are thin: they read through selectors, write through services, and only
shape values for display: figures go to the templates as Decimals and become text
through the `money` template filters (`pricing.formatting`), never floats.
"""

from collections.abc import Iterable
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from allocation.access import batches_visible
from allocation.choices import CORE_TAGS, UsageBatchStatus, UsageSourceFormat
from allocation.filtersets import UsageBatchFilterSet
from allocation.forms.ledger import DEFAULT_GROUP_BY, UsageSummaryForm, UsageUploadForm, group_label
from allocation.selectors.ledger import (
    tag_coverage,
    usage_batches,
    usage_latest_period,
    usage_rejection_rows,
)
from allocation.selectors.rating import rating_run_current, usage_summary
from allocation.services.ledger import usage_upload_queue
from pricing.csv_export import CSV_CONTENT_TYPE, csv_lines
from pricing.errors import ValidationFailed

__all__ = [
    "csv_download",
    "usage_batch_detail",
    "usage_batch_list",
    "usage_batch_rejections_csv",
    "usage_overview",
]

# Batches in these states still change; their pages refresh themselves.
LIVE_STATUSES = frozenset({UsageBatchStatus.PENDING, UsageBatchStatus.RUNNING})
REJECTIONS_SHOWN = 200
SOURCE_LABELS: dict[str, str] = dict(UsageSourceFormat.choices)
BATCHES_PER_PAGE = 50
# Grouping by a per-call key (trace, request) can yield a group per call; a
# page stays readable and fast by showing the first ones (the API has them all).
SUMMARY_ROWS_SHOWN = 1000


def _field_for(error: ValidationFailed) -> str | None:
    return {"invalid_period": "period", "invalid_group_by": "group_by"}.get(error.code)


@require_GET
def usage_overview(request: HttpRequest) -> HttpResponse:
    # A link that names only a period keeps the default grouping; so does a
    # form with every box cleared (the boxes then show what was used).
    period = request.GET.get("period")
    form = UsageSummaryForm(
        {
            "period": usage_latest_period() if period is None else period,
            "group_by": request.GET.getlist("group_by") or list(DEFAULT_GROUP_BY),
        }
    )
    context: dict = {"form": form}
    if form.is_valid():
        period, group_by = form.cleaned_data["period"], form.cleaned_data["group_by"]
        try:
            summary = usage_summary(period=period, group_by=group_by)
            coverage = tag_coverage(period=period)
        except ValidationFailed as error:
            form.add_error(_field_for(error), error.message)
        else:
            previous_period, next_period = str(period.previous), str(period.next)
            context.update(
                period=period,
                group_by=group_by,
                headings=[group_label(key) for key in group_by],
                summary=[
                    {
                        "keys": [row[key] for key in group_by],
                        "quantity": row["quantity"],
                        "line_count": row["line_count"],
                        "cost": row["cost"],
                        "unpriced": row["unpriced_line_count"],
                    }
                    for row in summary[:SUMMARY_ROWS_SHOWN]
                ],
                group_count=len(summary),
                rows_shown=min(len(summary), SUMMARY_ROWS_SHOWN),
                total_lines=sum(row["line_count"] for row in summary),
                rated=rating_run_current(period=period) is not None,
                total_cost=sum((row["cost"] or Decimal(0) for row in summary), Decimal(0)),
                total_unpriced=sum(row["unpriced_line_count"] for row in summary),
                mixes_units="unit" not in group_by,
                coverage=[_coverage_row(entry) for entry in coverage],
                core_tags=[group_label(tag) for tag in CORE_TAGS],
                previous_query=urlencode({"period": previous_period, "group_by": group_by}, doseq=True),
                next_query=urlencode({"period": next_period, "group_by": group_by}, doseq=True),
                previous_period=previous_period,
                next_period=next_period,
            )
    # A period or grouping the page cannot show is the client's error, as on the API.
    return render(request, "allocation/ledger/usage_overview.html", context, status=400 if form.errors else 200)


def _coverage_row(entry: dict) -> dict:
    return {
        "source": SOURCE_LABELS.get(entry["source"], entry["source"]),
        "lines": entry["lines"],
        "tags": [
            {"lines": entry[f"{tag}_line_share"], "quantity": entry[f"{tag}_quantity_share"]} for tag in CORE_TAGS
        ],
        "untagged_lines": entry["untagged_lines"],
        "untagged_share": entry["untagged_line_share"],
        "untagged_quantity": entry["untagged_quantity"],
        "has_untagged": entry["untagged_lines"] > 0,
    }


@require_http_methods(["GET", "POST"])
def usage_batch_list(request: HttpRequest) -> HttpResponse:
    upload = UsageUploadForm(request.POST, request.FILES) if request.method == "POST" else UsageUploadForm()
    if request.method == "POST" and upload.is_valid():
        try:
            batch = usage_upload_queue(
                uploaded_file=upload.cleaned_data["file"],
                source_format=upload.cleaned_data["source_format"],
                actor=request.user,
            )
        except ValidationFailed as error:
            upload.add_error(None, error.message)
        else:
            messages.success(request, f"Uploaded {batch.source_name} as batch {batch.pk}.")
            return redirect("usage-batch", batch_id=batch.pk)
    filterset = UsageBatchFilterSet(request.GET or None, queryset=batches_visible(request.user, usage_batches()))
    page = Paginator(filterset.qs, BATCHES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "upload": upload,
        "filterset": filterset,
        "page": page,
        "live": any(batch.status in LIVE_STATUSES for batch in page),
    }
    return render(request, "allocation/ledger/batch_list.html", context, status=400 if upload.errors else 200)


@require_GET
def usage_batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(batches_visible(request.user, usage_batches()), pk=batch_id)
    rejections = list(batch.rejections.order_by("line", "id")[:REJECTIONS_SHOWN])
    context = {
        "batch": batch,
        "rejections": rejections,
        "rejections_shown": len(rejections),
        "live": batch.status in LIVE_STATUSES,
    }
    return render(request, "allocation/ledger/batch_detail.html", context)


def csv_download(rows: Iterable[Iterable], *, filename: str) -> StreamingHttpResponse:
    """A CSV file streamed row by row, so a large download holds no memory; cells neutralized
    against spreadsheet formulas by the one CSV writer (`pricing.csv_export`)."""
    response = StreamingHttpResponse(csv_lines(rows), content_type=CSV_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
def usage_batch_rejections_csv(request: HttpRequest, batch_id: int) -> StreamingHttpResponse:
    batch = get_object_or_404(batches_visible(request.user, usage_batches()), pk=batch_id)
    return csv_download(usage_rejection_rows(batch=batch), filename=f"batch-{batch.pk}-rejections.csv")
