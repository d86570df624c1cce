"""Pages of the price books: the books, a book's versions and prices, what
changed between two versions, and a version as a file to download.

Views are thin: they read through selectors and only shape values for display
(prices become "$2.50 per 1M input tokens" through `pricing.formatting`, from
Decimals, never floats).
"""

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from .choices import PriceBookKind
from .formatting import price_text
from .models import PriceBook, PriceBookVersion
from .selectors import (
    price_book_overview,
    price_book_prices,
    price_book_version_choices,
    price_book_version_diff,
    price_book_versions,
    unit_names,
)
from .services.price_books import price_book_export

__all__ = [
    "KIND_LABELS",
    "price_book_detail",
    "price_book_diff",
    "price_book_download",
    "price_book_list",
]

PRICES_PER_PAGE = 100
# A diff of two list books can change thousands of prices; a page stays
# readable with the first ones of each kind (the exports hold them all).
DIFF_ROWS_SHOWN = 500
KIND_LABELS: dict[str, str] = {
    PriceBookKind.LIST: "List",
    PriceBookKind.CONTRACT: "Contract",
    PriceBookKind.RATE_CARD: "Rate card",
}
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "yaml": ("yaml", "application/yaml; charset=utf-8"),
    "csv": ("csv", "text/csv; charset=utf-8"),
}


def _book_row(entry: dict) -> dict:
    return {**entry, "kind_label": KIND_LABELS.get(entry["book"].kind, entry["book"].kind)}


@require_GET
def price_book_list(request: HttpRequest) -> HttpResponse:
    return render(
        request, "pricing/price_book_list.html", {"books": [_book_row(entry) for entry in price_book_overview()]}
    )


def _version_or_404(book: PriceBook, number: str | int | None) -> PriceBookVersion | None:
    if number in (None, ""):
        return book.latest_version()
    try:
        return book.versions.get(number=int(number))
    except (ValueError, PriceBookVersion.DoesNotExist):
        raise Http404(f"price book {book.code} has no version {number}") from None


def _price_rows(prices, names: dict[str, str]) -> list[dict]:
    return [
        {
            "price": price,
            "amount": price_text(
                amount=price.amount,
                quantum=price.quantum,
                currency=price.currency,
                unit_name=names.get(price.unit_id, price.unit_id),
            ),
        }
        for price in prices
    ]


@require_GET
def price_book_detail(request: HttpRequest, code: str) -> HttpResponse:
    book = get_object_or_404(PriceBook, code=code)
    versions = list(price_book_versions(book=book))
    version = _version_or_404(book, request.GET.get("version"))
    context: dict = {
        "book": book,
        "kind_label": KIND_LABELS.get(book.kind, book.kind),
        "versions": versions,
        "version": version,
        "is_latest": version is not None and versions and version.pk == versions[0].pk,
    }
    if version is not None:
        filters = {key: request.GET.get(key, "").strip() for key in ("provider", "model", "unit")}
        prices = price_book_prices(version=version, **filters)
        page = Paginator(prices, PRICES_PER_PAGE).get_page(request.GET.get("page"))
        choices = price_book_version_choices(version=version)
        names = unit_names()
        context.update(
            filters=filters,
            filtered=any(filters.values()),
            providers=choices["providers"],
            units=[(code, names.get(code, code)) for code in choices["units"]],
            page=page,
            rows=_price_rows(page.object_list, names),
        )
    return render(request, "pricing/price_book_detail.html", context)


@require_GET
def price_book_download(request: HttpRequest, code: str, number: int, file_format: str) -> HttpResponse:
    if file_format not in EXPORT_FORMATS:
        raise Http404(f"no export format {file_format!r}: yaml or csv")
    book = get_object_or_404(PriceBook, code=code)
    version = get_object_or_404(PriceBookVersion, book=book, number=number)
    extension, content_type = EXPORT_FORMATS[file_format]
    response = HttpResponse(price_book_export(version=version, file_format=file_format), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{book.code}-v{version.number}.{extension}"'
    return response


def _diff_row(row: dict, names: dict[str, str]) -> dict:
    return {
        **row,
        "amount_text": price_text(
            amount=row["amount"],
            quantum=row["quantum"],
            currency=row["currency"],
            unit_name=names.get(row["unit"], row["unit"]),
        ),
    }


@require_GET
def price_book_diff(request: HttpRequest, code: str) -> HttpResponse:
    book = get_object_or_404(PriceBook, code=code)
    versions = list(price_book_versions(book=book))
    context: dict = {"book": book, "kind_label": KIND_LABELS.get(book.kind, book.kind), "versions": versions}
    if len(versions) < 2:
        return render(request, "pricing/price_book_diff.html", context)
    by_number = {version.number: version for version in versions}
    errors = []
    chosen = {}
    for field, default in (("from", versions[1].number), ("to", versions[0].number)):
        raw = request.GET.get(field, "").strip()
        try:
            number = int(raw) if raw else default
        except ValueError:
            number = None
        if number not in by_number:
            errors.append((field, f"{book.code} has no version {raw}; pick one of its versions."))
            number = default
        chosen[field] = number
    context.update(chosen=chosen, errors=errors)
    if errors:
        return render(request, "pricing/price_book_diff.html", context, status=400)
    diff = price_book_version_diff(old=by_number[chosen["from"]], new=by_number[chosen["to"]])
    names = unit_names()
    changed = [
        {
            **row,
            "old_text": _diff_row(row["old"], names)["amount_text"],
            "new_text": _diff_row(row["new"], names)["amount_text"],
            "direction": "" if not row["change"] else ("up" if row["change"] > 0 else "down"),
        }
        for row in diff["changed"][:DIFF_ROWS_SHOWN]
    ]
    context.update(
        diff=diff,
        added=[_diff_row(row, names) for row in diff["added"][:DIFF_ROWS_SHOWN]],
        removed=[_diff_row(row, names) for row in diff["removed"][:DIFF_ROWS_SHOWN]],
        changed=changed,
        end_dates_changed=any(row["old"]["effective_to"] != row["new"]["effective_to"] for row in changed),
        rows_shown=DIFF_ROWS_SHOWN,
        identical=not (diff["added"] or diff["removed"] or diff["changed"]),
    )
    return render(request, "pricing/price_book_diff.html", context)
