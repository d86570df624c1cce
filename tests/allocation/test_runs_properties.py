"""Property: for random ledgers and invoices, every invoice ties out to the cent.

For each provider and invoice, allocated + unallocated == the invoice total,
whatever the usage (priced or not, tagged or not, failed calls), the invoice
lines (usage, tax, credits, negative refunds, pool lines) and the true-up.
"""

from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocation.models import AllocationLine, InvoiceLine, ProviderInvoice
from allocation.services.runs.run import allocation_run_execute
from pricing.money import CENT, quantize

from .runs_world import (
    MONTH,
    build_mapping,
    build_org,
    build_prices,
    invoice_csv,
    make_approver,
    usage,
)

pytestmark = pytest.mark.django_db

TAGS = [
    {"team": "search", "feature": "web", "environment": "production"},
    {"team": "research", "feature": "bench", "environment": "eval"},
    {"team": "platform", "feature": "summarize", "environment": "production", "caller": "support"},
    {"team": "platform", "feature": "summarize", "environment": "production", "caller": "nobody", "outcome": "failed"},
    {"team": "platform", "feature": "rerank", "environment": "production", "caller": "search"},
    {"team": "platform", "feature": "embed", "environment": "production", "caller": "research"},
    {"team": "support", "feature": "chat", "environment": "staging"},
    {},
]
UNITS = ["input_token", "output_token", "cached_input_token"]
MODELS = ["acme-1", "acme-1", "mystery-2"]  # one in three unknown: unpriced

usage_events = st.lists(
    st.tuples(
        st.sampled_from(range(len(TAGS))), st.sampled_from(UNITS), st.sampled_from(MODELS), st.integers(1, 10**9)
    ),
    min_size=0,
    max_size=12,
)
money = st.decimals(min_value=Decimal("-50"), max_value=Decimal("500"), places=6, allow_nan=False, allow_infinity=False)
invoice_lines = st.lists(
    st.tuples(
        st.integers(0, 1),  # which invoice
        st.sampled_from(["usage", "usage", "tax", "credit", "purchase", "adjustment"]),
        st.sampled_from(["acme-1-tokens", "platform-fee", "vs-storage", "support"]),
        money,
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture
def base_world(tmp_path, django_user_model):
    build_org()
    build_prices()
    build_mapping(tmp_path, make_approver(django_user_model))


class _Rollback(Exception):
    pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=usage_events, lines=invoice_lines, tolerance=st.sampled_from([Decimal("0"), Decimal("0.02"), Decimal("0.1")])
)
def test_every_invoice_ties_out_to_the_cent(base_world, tmp_path, events, lines, tolerance):
    from allocation.services.invoices.ingest import invoice_ingest_file
    from allocation.services.ledger import usage_ingest_events

    try:
        with transaction.atomic():
            if events:
                usage_ingest_events(
                    events=[
                        usage(f"e{i}", unit, quantity, **TAGS[tags]) | {"model": model}
                        for i, (tags, unit, model, quantity) in enumerate(events)
                    ],
                    source_name="property",
                )
            rows = "".join(
                f"INV-{which},acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,{category},{sku},"
                f"{'Hosted vector store' if sku == 'vs-storage' else sku},,,{amount},{amount},,USD\n"
                for which, category, sku, amount in lines
            )
            batch = invoice_ingest_file(path=invoice_csv(tmp_path, rows), source_format="csv", provider="acme-ai")
            assert batch.rejected == 0
            run = allocation_run_execute(period=MONTH, tolerance=tolerance)
            for invoice in ProviderInvoice.objects.all():
                exact = sum((line.effective_cost for line in InvoiceLine.objects.filter(invoice=invoice)), Decimal(0))
                allocated = AllocationLine.objects.filter(run=run, invoice=invoice).aggregate(total=Sum("amount"))
                assert quantize(allocated["total"] or Decimal(0), CENT) == quantize(exact, CENT)
            assert run.allocated + run.unallocated == run.invoice_total
            transfers = AllocationLine.objects.filter(run=run, invoice__isnull=True).aggregate(total=Sum("amount"))
            assert (transfers["total"] or 0) == 0  # fixed fees net to zero; unbilled usage carries no money
            raise _Rollback
    except _Rollback:
        pass


def test_a_cent_invoiced_against_thousands_rated_is_far_beyond_tolerance(base_world, tmp_path):
    """Found by the property above on PostgreSQL: a variance share of a billion-fold overflowed
    its column and failed the run. The share is kept at the column's limit and the run flagged."""
    from allocation.models import ReconciliationLine
    from allocation.services.invoices.ingest import invoice_ingest_file
    from allocation.services.ledger import usage_ingest_events
    from allocation.services.runs.reconciliation import SHARE_LIMIT

    usage_ingest_events(events=[usage("big", "output_token", 10**9, team="search")], source_name="t")
    rows = "INV-0,acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,usage,acme-1-tokens,t,,,0.000001,0.000001,,USD\n"
    invoice_ingest_file(path=invoice_csv(tmp_path, rows), source_format="csv", provider="acme-ai")
    run = allocation_run_execute(period=MONTH)
    total = ReconciliationLine.objects.get(run=run, model="")
    assert total.variance_share == SHARE_LIMIT and not total.within_tolerance and run.is_flagged
    assert total.variance > 1000  # the variance itself is kept exactly
