"""`POST /v2/orders`: a JSON order checked field by field; every error returned at once."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

SIDES = ("buy", "sell")


def _positive(value: Any, integral: bool) -> bool:
    # bool is an int to Python, but `"qty": true` is not a quantity.
    if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
        return False
    return bool(value > 0)


class OrderBook:
    """Accepts well-formed orders (numbered `o-1`, `o-2`, ...) and remembers them."""

    FIELDS = ("sym", "side", "qty", "px")

    def __init__(self, symbols: Iterable[str]) -> None:
        self._symbols = tuple(symbols)  # a tuple: `[1] in` it is False, not a TypeError
        self._ids = itertools.count(1)
        self.accepted: list[dict[str, Any]] = []

    def errors(self, body: Any) -> list[str]:
        """Everything wrong with `body` as an order; empty when it is a good one."""
        if not isinstance(body, dict):
            return ["body must be a JSON object {sym, side, qty, px}"]
        checks = {
            "sym": (body.get("sym") in self._symbols, f"one of {sorted(self._symbols)}"),
            "side": (body.get("side") in SIDES, f"one of {SIDES}"),
            "qty": (_positive(body.get("qty"), integral=True), "a positive integer"),
            "px": (_positive(body.get("px"), integral=False), "a positive number"),
        }
        errors = [f"{name}: must be {want}" for name, (ok, want) in checks.items() if not ok]
        errors += [f"{name}: unexpected field" for name in body if name not in checks]
        return errors

    def place(self, body: Any, user: str) -> tuple[dict[str, Any], list[str]]:
        """(the accepted order, []) or ({}, every error)."""
        errors = self.errors(body)
        if errors:
            return {}, errors
        order = {"order_id": f"o-{next(self._ids)}", "status": "accepted", "user": user}
        order |= {name: body[name] for name in self.FIELDS}
        self.accepted.append(order)
        return order, []
