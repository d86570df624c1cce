"""Reads of the organization: cost centers as a roll-up tree."""

from allocation.access import EVERY_COST_CENTER, CostCenterScope
from allocation.models import CostCenter

__all__ = ["cost_center_tree"]


def cost_center_tree(*, scope: CostCenterScope = EVERY_COST_CENTER) -> list[dict]:
    """Cost centers in scope in roll-up order (each under its parent) with their depth,
    teams and features prefetched: three queries whatever the size. A center whose
    parent is out of scope is shown at the top.

    A parent chain that loops (the database forbids only a center being its
    own parent; load_org refuses cycles) is shown from its first member.
    """
    centers = list(scope.filter(CostCenter.objects.prefetch_related("teams__features"), "pk"))
    known = {center.pk for center in centers}
    by_parent: dict[int | None, list[CostCenter]] = {}
    for center in centers:
        by_parent.setdefault(center.parent_id if center.parent_id in known else None, []).append(center)
    codes = {center.pk: center.code for center in centers}
    ordered: list[dict] = []
    seen: set[int] = set()

    def visit(center: CostCenter, depth: int) -> None:
        if center.pk in seen:
            return
        seen.add(center.pk)
        ordered.append({"center": center, "depth": depth, "parent_code": codes.get(center.parent_id, "")})
        for child in by_parent.get(center.pk, []):
            visit(child, depth + 1)

    for center in [*by_parent.get(None, []), *centers]:
        visit(center, 0)
    return ordered
