"""What a run read (its inputs, as stable identities and checksums) and its fingerprint:
the same inputs give the same fingerprint, in any process or database."""

import hashlib
import json

from allocation.models import (
    AllocationLine,
    CostCenter,
    MappingRule,
    SharedCostPool,
)

__all__ = ["run_fingerprint", "run_inputs"]


def run_inputs(
    *, version, rating_run, card_versions, invoices, lines_by_invoice, batch_ids, activity_rows, tolerance
) -> dict:
    """What the run read, as stable identities and checksums (no run-local ids)."""
    price_versions = sorted(
        (v.book.code, v.number, v.checksum) for v in rating_run.price_book_versions.select_related("book")
    )
    return {
        "mapping_version": {"number": version.number, "content_hash": version.content_hash},
        "price_book_versions": [list(v) for v in price_versions],
        "rate_card_versions": sorted([v.book.code, v.number, v.checksum] for v in card_versions),
        "invoices": [
            {
                "provider": invoice.provider,
                "invoice_id": invoice.invoice_id,
                "lines": len(lines_by_invoice[invoice.pk]),
                "checksum": hashlib.sha256(
                    "\n".join(
                        f"{line.line_key}:{line.effective_cost}:{line.billed_cost}"
                        for line in lines_by_invoice[invoice.pk]
                    ).encode()
                ).hexdigest(),
            }
            for invoice in invoices
        ],
        "usage_batches": batch_ids,
        "ledger": {
            "lines_rated": rating_run.lines_rated,
            "lines_unpriced": rating_run.lines_unpriced,
            "rated_cost": str(rating_run.cost),
        },
        "activity_counts": [[row.driver, row.cost_center.code, str(row.count)] for row in activity_rows],
        "tolerance": str(tolerance),
    }


def run_fingerprint(inputs: dict, lines: list[AllocationLine]) -> str:
    """SHA-256 of the inputs and every line's key and cents: the same inputs give the same value."""
    codes = dict(CostCenter.objects.values_list("pk", "code"))
    rule_ids = {line.rule_id for line in lines if line.rule_id}
    positions = dict(MappingRule.objects.filter(pk__in=rule_ids).values_list("pk", "position"))
    pool_codes = dict(
        SharedCostPool.objects.filter(pk__in={line.pool_id for line in lines if line.pool_id}).values_list("pk", "code")
    )
    rows = sorted(
        "|".join(
            str(v)
            for v in (
                line.provider,
                line.invoice.invoice_id if line.invoice else "",
                codes.get(line.cost_center_id, ""),
                line.reason,
                line.team,
                line.feature,
                line.environment,
                line.modality,
                line.model,
                line.unit,
                line.category,
                line.method,
                line.treatment,
                positions.get(line.rule_id, ""),
                pool_codes.get(line.pool_id, ""),
                line.line_count,
                line.amount,
            )
        )
        for line in lines
    )
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode())
    for row in rows:
        digest.update(row.encode() + b"\n")
    return digest.hexdigest()
