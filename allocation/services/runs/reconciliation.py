"""Reconciliation: rated usage against invoiced usage, per provider and per model."""

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from allocation.choices import (
    ChargeCategory,
)
from allocation.models import (
    AllocationRun,
    InvoiceLine,
    ReconciliationLine,
)
from pricing.money import quantize
from pricing.selectors import model_resolve

__all__ = ["reconcile_provider"]


# The largest variance share a reconciliation line keeps (its column: 12 digits, 6 places).
SHARE_LIMIT = Decimal("999999.999999")


def reconcile_provider(
    run: AllocationRun, provider: str, lines: Iterable[InvoiceLine], charged, pool_of, tolerance
) -> list[ReconciliationLine]:
    """Rated usage against invoiced usage (pool lines aside), per provider and, where
    every invoiced usage line names its model, per model (both resolved to the catalog)."""
    names: dict[str, str] = {}

    def catalog_name(model: str) -> str:
        if model not in names:
            catalog_model = model_resolve(provider=provider, model=model) if model else None
            names[model] = catalog_model.name if catalog_model is not None else model
        return names[model]

    invoiced: dict[str, Decimal] = defaultdict(Decimal)
    named = True
    for line in lines:
        if line.charge_category != ChargeCategory.USAGE or pool_of[line.pk] is not None:
            continue
        named = named and bool(line.model)
        invoiced[catalog_name(line.model)] += line.effective_cost
    rows: list[tuple[str, Decimal, Decimal]] = [
        ("", sum(invoiced.values(), Decimal(0)), charged.rated_cost if charged else Decimal(0))
    ]
    if named and invoiced and charged:
        rated: dict[str, Decimal] = defaultdict(Decimal)
        for model, cost in charged.rated_by_model.items():
            rated[catalog_name(model)] += cost
        for model in sorted(set(invoiced) | set(rated)):
            rows.append((model or "(no model)", invoiced.get(model, Decimal(0)), rated.get(model, Decimal(0))))
    result = []
    for model, invoice_cost, rated_cost in rows:
        variance = rated_cost - invoice_cost
        share = (variance / invoice_cost).quantize(Decimal("0.000001")) if invoice_cost else None
        within = abs(share) <= tolerance if share is not None else not variance
        if share is not None and abs(share) > SHARE_LIMIT:
            # A cent invoiced against thousands rated: the share only says "far beyond tolerance",
            # and the column holds up to a million-fold.
            share = SHARE_LIMIT.copy_sign(share)
        result.append(
            ReconciliationLine(
                run=run,
                provider=provider,
                model=model,
                invoice_cost=quantize(invoice_cost, Decimal("1e-12")),
                rated_cost=quantize(rated_cost, Decimal("1e-12")),
                variance=quantize(variance, Decimal("1e-12")),
                variance_share=share,
                within_tolerance=within,
            )
        )
    return result
