"""Reads of the organization: cost centers as a roll-up tree."""

from allocation.models import CostCenter

__all__ = ["cost_center_tree"]


def cost_center_tree() -> list[dict]:
    """Cost centers in roll-up order (each under its parent) with their depth,
    teams and features prefetched: three queries whatever the size.

    A parent chain that loops (the database forbids only a center being its
    own parent; load_org refuses cycles) is shown from its first member.
    """
    centers = list(CostCenter.objects.prefetch_related("teams__features"))
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
