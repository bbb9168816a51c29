"""Synthetic VN30 market state: a seeded random walk of quotes, indices, futures and alerts.

Pure data and arithmetic, no asyncio: the app ticks it on a timer and reads payloads from it.
Prices are in VND and follow HOSE rules (tick size by price band, +/-7% daily limits), so the
numbers look like the real board without any I/O.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

JsonObject = dict[str, Any]

VN30_TICKERS: Final[tuple[str, ...]] = (
    "ACB", "BCM", "BID", "BVH", "CTG", "FPT", "GAS", "GVR", "HDB", "HPG",
    "MBB", "MSN", "MWG", "PLX", "POW", "SAB", "SHB", "SSB", "SSI", "STB",
    "TCB", "TPB", "VCB", "VHM", "VIB", "VIC", "VJC", "VNM", "VPB", "VRE",
)  # fmt: skip

# Plausible reference prices (VND) so that tick sizes and limit bands come out realistic.
_REFERENCE_PRICES: Final[dict[str, int]] = {
    "ACB": 24_800, "BCM": 66_000, "BID": 47_000, "BVH": 50_000, "CTG": 35_000,
    "FPT": 135_000, "GAS": 68_000, "GVR": 30_000, "HDB": 26_000, "HPG": 26_500,
    "MBB": 24_500, "MSN": 75_000, "MWG": 60_000, "PLX": 40_000, "POW": 12_500,
    "SAB": 55_000, "SHB": 11_000, "SSB": 17_000, "SSI": 26_000, "STB": 35_000,
    "TCB": 24_000, "TPB": 16_000, "VCB": 92_000, "VHM": 42_000, "VIB": 20_000,
    "VIC": 42_000, "VJC": 100_000, "VNM": 65_000, "VPB": 19_500, "VRE": 18_000,
}  # fmt: skip

_VN30_REFERENCE: Final = 1_350.0
_VNINDEX_REFERENCE: Final = 1_280.0
_FUTURES_SYMBOL: Final = "VN30F1M"
_FUTURES_REFERENCE: Final = _VN30_REFERENCE - 2.0
_PRICE_LIMIT: Final = 0.07
_LOT: Final = 100
_TRADE_PROBABILITY: Final = 0.5
_FOREIGN_PROBABILITY: Final = 0.3
_NEW_ALERTS_KEPT: Final = 50
_ALERT_KINDS: Final[tuple[str, ...]] = (
    "price_spike",
    "volume_surge",
    "foreign_net_buy",
    "foreign_net_sell",
    "near_ceiling",
    "near_floor",
)


def tick_size(price: float) -> int:
    """HOSE price step for a stock trading at `price` VND."""
    if price < 10_000:
        return 10
    if price < 50_000:
        return 50
    return 100


def _round_down(price: float, step: int) -> int:
    return int(price // step) * step


def _round_up(price: float, step: int) -> int:
    return -int(-price // step) * step


@dataclass(slots=True)
class StockQuote:
    """One VN30 constituent's board line, mutated in place on every tick."""

    symbol: str
    ref: int
    ceiling: int
    floor: int
    price: int
    open: int
    high: int
    low: int
    volume: int = 0
    value: int = 0
    foreign_buy_volume: int = 0
    foreign_sell_volume: int = 0
    foreign_buy_value: int = 0
    foreign_sell_value: int = 0

    @classmethod
    def opening(cls, symbol: str, ref: int) -> StockQuote:
        """A quote at the start of the session: every price equals the reference price."""
        ceiling = _round_down(ref * (1 + _PRICE_LIMIT), tick_size(ref * (1 + _PRICE_LIMIT)))
        floor = _round_up(ref * (1 - _PRICE_LIMIT), tick_size(ref * (1 - _PRICE_LIMIT)))
        return cls(symbol, ref, ceiling, floor, ref, ref, ref, ref)

    @property
    def change(self) -> int:
        """Price change against the reference price, in VND."""
        return self.price - self.ref

    @property
    def change_pct(self) -> float:
        """Price change against the reference price, in percent."""
        return round(100.0 * (self.price - self.ref) / self.ref, 2)

    def to_json(self) -> JsonObject:
        """The quote as sent in `quotes`."""
        step = tick_size(self.price)
        return {
            "symbol": self.symbol,
            "price": self.price,
            "ref": self.ref,
            "ceiling": self.ceiling,
            "floor": self.floor,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "change": self.change,
            "change_pct": self.change_pct,
            "volume": self.volume,
            "value": self.value,
            "bid": max(self.floor, self.price - step),
            "ask": self.price,
        }

    def foreign_json(self) -> JsonObject:
        """The stock's foreign flow as sent in `stocks` of the foreign channel."""
        return {
            "symbol": self.symbol,
            "buy_volume": self.foreign_buy_volume,
            "sell_volume": self.foreign_sell_volume,
            "net_volume": self.foreign_buy_volume - self.foreign_sell_volume,
            "buy_value": self.foreign_buy_value,
            "sell_value": self.foreign_sell_value,
            "net_value": self.foreign_buy_value - self.foreign_sell_value,
        }


class MarketState:
    """The simulated VN30 board. `tick()` advances it; the `*_payload` methods read it.

    Every tick moves prices, so the market and foreign channels change on every tick; the
    alerts channel changes only when a tick raises an alert.
    """

    def __init__(self, seed: int, alert_probability: float = 0.3, alert_history: int = 500) -> None:
        self._rng = random.Random(seed)
        self._alert_probability = alert_probability
        self.quotes: dict[str, StockQuote] = {
            symbol: StockQuote.opening(symbol, _REFERENCE_PRICES[symbol]) for symbol in VN30_TICKERS
        }
        self.version = 0
        self.alerts_version = 0
        self._vnindex_noise = 0.0
        self._basis = _FUTURES_REFERENCE - _VN30_REFERENCE
        self._futures_volume = 0
        self._open_interest = 40_000
        self._alert_id = 0
        self._alerts: deque[JsonObject] = deque(maxlen=alert_history)
        self._new_alerts: deque[JsonObject] = deque(maxlen=_NEW_ALERTS_KEPT)

    def tick(self, now: float | None = None) -> bool:
        """Advance the market by one step; return whether a new alert was raised."""
        rng = self._rng
        for quote in self.quotes.values():
            if rng.random() < _TRADE_PROBABILITY:
                self._trade(quote, rng)
            if rng.random() < _FOREIGN_PROBABILITY:
                self._foreign_trade(quote, rng)
        self._vnindex_noise = max(-3.0, min(3.0, self._vnindex_noise + rng.uniform(-0.2, 0.2)))
        self._basis = max(-8.0, min(8.0, self._basis + rng.uniform(-0.3, 0.3)))
        self._futures_volume += rng.randint(0, 40)
        self._open_interest = max(0, self._open_interest + rng.randint(-20, 20))
        self.version += 1
        if rng.random() < self._alert_probability:
            self._raise_alert(rng, time.time() if now is None else now)
            return True
        return False

    @staticmethod
    def _trade(quote: StockQuote, rng: random.Random) -> None:
        step = tick_size(quote.price)
        # Pull gently towards the reference price so a long soak does not pin every stock
        # at its ceiling or floor.
        drift = -1 if quote.price > quote.ref else 1
        moves = rng.choice((-2, -1, -1, 0, 0, 1, 1, 2, drift))
        price = min(quote.ceiling, max(quote.floor, quote.price + moves * step))
        quote.price = price
        quote.high = max(quote.high, price)
        quote.low = min(quote.low, price)
        volume = rng.randint(1, 50) * _LOT
        quote.volume += volume
        quote.value += volume * price

    @staticmethod
    def _foreign_trade(quote: StockQuote, rng: random.Random) -> None:
        volume = rng.randint(1, 30) * _LOT
        if rng.random() < 0.5:
            quote.foreign_buy_volume += volume
            quote.foreign_buy_value += volume * quote.price
        else:
            quote.foreign_sell_volume += volume
            quote.foreign_sell_value += volume * quote.price

    def _raise_alert(self, rng: random.Random, now: float) -> None:
        quote = self.quotes[rng.choice(VN30_TICKERS)]
        kind = rng.choice(_ALERT_KINDS)
        self._alert_id += 1
        net = quote.foreign_buy_volume - quote.foreign_sell_volume
        messages = {
            "price_spike": f"{quote.symbol} moved {quote.change_pct:+.2f}% to {quote.price}",
            "volume_surge": f"{quote.symbol} volume reached {quote.volume:,}",
            "foreign_net_buy": f"{quote.symbol} foreign net volume {net:+,}",
            "foreign_net_sell": f"{quote.symbol} foreign net volume {net:+,}",
            "near_ceiling": f"{quote.symbol} at {quote.price}, ceiling {quote.ceiling}",
            "near_floor": f"{quote.symbol} at {quote.price}, floor {quote.floor}",
        }
        alert: JsonObject = {
            "id": self._alert_id,
            "symbol": quote.symbol,
            "kind": kind,
            "severity": "warning" if kind in ("near_ceiling", "near_floor") else "info",
            "message": messages[kind],
            "price": quote.price,
            "change_pct": quote.change_pct,
            "created_at": now,
        }
        self._alerts.appendleft(alert)
        self._new_alerts.append(alert)
        self.alerts_version += 1

    # Payloads --------------------------------------------------------------------------

    def _indices(self) -> JsonObject:
        quotes = self.quotes.values()
        # An equal-weighted index is enough to make the indices follow the constituents.
        ratio = sum(q.price / q.ref for q in quotes) / len(self.quotes)
        vn30 = round(_VN30_REFERENCE * ratio, 2)
        vnindex = round(_VNINDEX_REFERENCE * (1 + 1.1 * (ratio - 1)) + self._vnindex_noise, 2)
        advances = sum(1 for q in quotes if q.price > q.ref)
        declines = sum(1 for q in quotes if q.price < q.ref)
        volume = sum(q.volume for q in quotes)
        value = sum(q.value for q in quotes)

        def index(name: str, level: float, ref: float, scale: int) -> JsonObject:
            return {
                "name": name,
                "value": level,
                "ref": ref,
                "change": round(level - ref, 2),
                "change_pct": round(100.0 * (level - ref) / ref, 2),
                "volume": volume * scale,
                "value_traded": value * scale,
                "advances": advances * scale,
                "declines": declines * scale,
                "unchanged": (len(self.quotes) - advances - declines) * scale,
            }

        return {
            "VN30": index("VN30", vn30, _VN30_REFERENCE, 1),
            # VNINDEX breadth scaled up so it looks like a whole-exchange index.
            "VNINDEX": index("VNINDEX", vnindex, _VNINDEX_REFERENCE, 13),
        }

    def foreign_summary(self) -> JsonObject:
        """Foreign flow totals over the VN30 basket."""
        quotes = self.quotes.values()
        buy_volume = sum(q.foreign_buy_volume for q in quotes)
        sell_volume = sum(q.foreign_sell_volume for q in quotes)
        buy_value = sum(q.foreign_buy_value for q in quotes)
        sell_value = sum(q.foreign_sell_value for q in quotes)
        return {
            "buy_volume": buy_volume,
            "sell_volume": sell_volume,
            "net_volume": buy_volume - sell_volume,
            "buy_value": buy_value,
            "sell_value": sell_value,
            "net_value": buy_value - sell_value,
        }

    def _derivatives(self, vn30: float) -> JsonObject:
        price = round(vn30 + self._basis, 1)
        return {
            _FUTURES_SYMBOL: {
                "symbol": _FUTURES_SYMBOL,
                "price": price,
                "ref": _FUTURES_REFERENCE,
                "change": round(price - _FUTURES_REFERENCE, 1),
                "basis": round(price - vn30, 2),
                "volume": self._futures_volume,
                "open_interest": self._open_interest,
            }
        }

    def market_payload(self) -> JsonObject:
        """Body of `GET /api/market/snapshot` and of `/ws/market` frames."""
        indices = self._indices()
        return {
            "quotes": [q.to_json() for q in self.quotes.values()],
            "indices": indices,
            "foreign": self.foreign_summary(),
            "derivatives": self._derivatives(indices["VN30"]["value"]),
            "prices": {symbol: q.price for symbol, q in self.quotes.items()},
        }

    def foreign_payload(self) -> JsonObject:
        """Body of `GET /api/market/foreign-detail` and of `/ws/foreign` frames."""
        stocks = sorted(
            (q.foreign_json() for q in self.quotes.values()),
            key=lambda stock: stock["net_value"],
            reverse=True,
        )
        return {"summary": self.foreign_summary(), "stocks": stocks}

    def recent_alerts(self, limit: int) -> list[JsonObject]:
        """The newest `limit` alerts, newest first."""
        return [alert for _, alert in zip(range(limit), self._alerts, strict=False)]

    def take_new_alerts(self) -> JsonObject:
        """Payload of an `/ws/alerts` frame: the alerts raised since the previous one."""
        alerts = list(self._new_alerts)
        self._new_alerts.clear()
        return {"alerts": alerts}
