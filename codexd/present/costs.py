"""Estimated costs over many tasks (`aggregate`): the tasks with an estimate added up, and
how many had none; nothing when none had one (no price set for their models)."""

from __future__ import annotations

from typing import Any

from codexd.present.views import dollars


def cost_total(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """`cost`: the estimates added up over the tasks that have one, and how many had none;
    nothing at all when none has one (no price is set)."""
    priced = [r["cost"]["usd"] for r in reports if dollars(r.get("cost"))]
    if not priced:
        return {}
    usd = round(sum(priced), 6)
    return {
        "cost": {"usd": usd, "estimated": True, "tasks": len(priced), "unpriced": len(reports) - len(priced)}
    }


def cost_line(total: dict[str, Any]) -> str | None:
    """`Estimated cost: ≈ $1.20 (3 tasks; 1 had no price)`, or None."""
    cost = total.get("cost")
    said = dollars(cost)
    if said is None or not isinstance(cost, dict):
        return None
    unpriced = f"; {cost['unpriced']} without a price, not counted" if cost.get("unpriced") else ""
    return f"Estimated cost: {said} ({cost['tasks']} task{'s' if cost['tasks'] != 1 else ''}{unpriced})"
