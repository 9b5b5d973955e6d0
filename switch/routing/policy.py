"""What a channel costs and where it may be used: the routing half of a channel's configuration.

A :class:`ChannelPolicy` is parsed from the ``[channels.routing]`` table of ``switch.toml``. It
answers the eligibility questions of specs/routing.md ("Choosing a channel", step 1: method,
flow, station, planned outage) and prices a payment under the channel's contract (step 2).

The fee is the same :class:`channels.fees.FeeContract` the reconciliation checks bills against,
so the price the router assumed is the price the books expect; the schedule only adds amount
tiers on top, by swapping the contract's rate. Every figure is an integer (fen, milli-fen, parts
per million): a float in the money keys of the configuration is refused, not rounded, because a
silently rounded rate is a fee nobody agreed to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from channels.fees import PPM, FeeContract, RefundFee, Rounding
from channels.model import Provider
from switch.service import Flow

__all__ = [
    "ALL_STATIONS",
    "DEFAULT_RATE_PPM",
    "ChannelPolicy",
    "FeeSchedule",
    "Outage",
    "RoutingConfigError",
    "Tier",
]

ALL_STATIONS: Final = "*"
DEFAULT_RATE_PPM: Final = 6000  # 0.60 %: what WeChat Pay and Alipay charge a fuel merchant

# WeChat's bill gives the fee a refund returns to the milli-fen; the others round it to the fen
# (see channels/fees.py and the fixture bills).
_REFUND_QUANTUM: Final[Mapping[Provider, int]] = {
    Provider.WECHATPAY: 1,
    Provider.ALIPAY: 1000,
    Provider.UNIONPAY: 1000,
}
_ROUTING_KEYS: Final = frozenset(
    {"methods", "flows", "stations", "fee", "tiers", "outages", "promotion_mfen"}
)
_FEE_KEYS: Final = frozenset(
    {"rate_ppm", "fixed_mfen", "min_mfen", "max_mfen", "rounding", "quantum_mfen", "refund"}
    | {"refund_quantum_mfen"}
)
_E = TypeVar("_E", Rounding, RefundFee)
_MAX_MFEN: Final = 10**15  # far beyond any fee; keeps typos like an extra 000000 out


class RoutingConfigError(ValueError):
    """A ``[channels.routing]`` table that cannot be used. The message names the key."""


@dataclass(frozen=True, slots=True)
class Tier:
    """From a payment of ``from_fen`` upwards, the contract's rate is ``rate_ppm``."""

    from_fen: int
    rate_ppm: int

    def __post_init__(self) -> None:
        if not _is_int(self.from_fen) or self.from_fen < 0:
            raise ValueError("a tier's from_fen is a non-negative integer")
        if not _is_int(self.rate_ppm) or not 0 <= self.rate_ppm <= PPM:
            raise ValueError("a tier's rate_ppm is an integer within 0..1,000,000")


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """A fee contract plus amount tiers: the highest tier whose ``from_fen`` is at most the
    amount sets the rate; below the first tier the contract's own rate applies. Fixed part,
    minimum, cap and rounding stay the contract's."""

    contract: FeeContract
    tiers: tuple[Tier, ...] = ()

    def __post_init__(self) -> None:
        starts = [tier.from_fen for tier in self.tiers]
        if starts != sorted(set(starts)):
            raise ValueError("tiers must be in increasing from_fen order, each start once")

    def contract_for(self, amount_fen: int) -> FeeContract:
        """The contract a payment of ``amount_fen`` is charged under."""
        rate = self.rate_ppm(amount_fen)
        if rate == self.contract.rate_ppm:
            return self.contract
        return dataclasses.replace(self.contract, rate_ppm=rate)

    def rate_ppm(self, amount_fen: int) -> int:
        rate = self.contract.rate_ppm
        for tier in self.tiers:
            if tier.from_fen > amount_fen:
                break
            rate = tier.rate_ppm
        return rate

    def fee_mfen(self, amount_fen: int) -> int:
        """The fee, in milli-fen, on a payment of ``amount_fen`` (0 for a zero amount)."""
        return self.contract_for(amount_fen).fee_mfen(amount_fen)


@dataclass(frozen=True, slots=True)
class Outage:
    """A planned outage, ``start`` inclusive, ``end`` exclusive; both timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("outage times must carry a UTC offset")
        if not self.start < self.end:
            raise ValueError("an outage must end after it starts")

    def covers(self, now: datetime) -> bool:
        return self.start <= now < self.end


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """Where a channel may be used and what it costs. ``promotion_mfen`` is what the channel
    pays back per payment (a provider's marketing subsidy), which lowers its net cost."""

    name: str
    provider: Provider
    methods: frozenset[str]
    flows: frozenset[Flow]
    stations: frozenset[str]
    fee: FeeSchedule
    outages: tuple[Outage, ...] = ()
    promotion_mfen: int = 0

    def serves_station(self, station_id: str) -> bool:
        return ALL_STATIONS in self.stations or station_id in self.stations

    def outage_at(self, now: datetime) -> Outage | None:
        """The planned outage ``now`` falls in, if any."""
        return next((o for o in self.outages if o.covers(now)), None)

    @classmethod
    def from_mapping(
        cls, name: str, provider: Provider, mapping: Mapping[str, Any] | None
    ) -> ChannelPolicy:
        """Parse a ``[channels.routing]`` table (``None`` or ``{}``: every default).

        Defaults: methods = [the provider's name], both flows, every station, 0.60 % and no
        fixed part, minimum or cap, no tiers, no outages, no promotion.
        """
        table = {} if mapping is None else mapping
        _no_unknown_keys(table, _ROUTING_KEYS, "")
        methods = _strings(table, "methods", [provider.value])
        flows_raw = _strings(table, "flows", [flow.value for flow in Flow])
        flows: set[Flow] = set()
        for value in flows_raw:
            try:
                flows.add(Flow(value))
            except ValueError:
                choices = ", ".join(flow.value for flow in Flow)
                raise RoutingConfigError(f"flows: {value!r} is not one of {choices}") from None
        return cls(
            name=name,
            provider=provider,
            methods=frozenset(methods),
            flows=frozenset(flows),
            stations=frozenset(_strings(table, "stations", [ALL_STATIONS])),
            fee=FeeSchedule(_contract(provider, table.get("fee", {})), _tiers(table)),
            outages=_outages(table),
            promotion_mfen=_integer(table, "promotion_mfen", 0, 0, _MAX_MFEN),
        )


# -- parsing helpers ---------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_unknown_keys(table: Mapping[str, Any], known: frozenset[str], prefix: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise RoutingConfigError(
            f"{prefix}{unknown[0]}: unknown key (known: {', '.join(sorted(known))})"
        )


def _table(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RoutingConfigError(f"{where}: must be a table")
    return value


def _integer(table: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = table.get(key, default)
    if not _is_int(value) or not low <= value <= high:
        why = " (a float is never accepted for money)" if isinstance(value, float) else ""
        raise RoutingConfigError(f"{key}: must be an integer {low}..{high}{why}")
    return int(value)


def _strings(table: Mapping[str, Any], key: str, default: list[str]) -> list[str]:
    value = table.get(key, default)
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or not value
        or not all(isinstance(item, str) and item for item in value)
    ):
        raise RoutingConfigError(f"{key}: must be a non-empty list of non-empty strings")
    return list(value)


def _enum_value(table: Mapping[str, Any], key: str, kind: type[_E], default: _E) -> _E:
    value = table.get(key, default.value)
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise RoutingConfigError(f"{key}: must be one of {choices}") from None


def _contract(provider: Provider, raw: object) -> FeeContract:
    fee = _table(raw, "fee")
    _no_unknown_keys(fee, _FEE_KEYS, "fee.")
    try:
        rate = _integer(fee, "rate_ppm", DEFAULT_RATE_PPM, 0, PPM)
        fixed = _integer(fee, "fixed_mfen", 0, 0, _MAX_MFEN)
        low = _integer(fee, "min_mfen", 0, 0, _MAX_MFEN)
        cap = _integer(fee, "max_mfen", 0, 0, _MAX_MFEN)
        quantum = _integer(fee, "quantum_mfen", 1000, 1, _MAX_MFEN)
        refund_quantum = _integer(
            fee, "refund_quantum_mfen", _REFUND_QUANTUM[provider], 1, _MAX_MFEN
        )
        rounding = _enum_value(fee, "rounding", Rounding, Rounding.HALF_UP)
        refund = _enum_value(fee, "refund", RefundFee, RefundFee.PROPORTIONAL)
    except RoutingConfigError as exc:
        raise RoutingConfigError(f"fee.{exc}") from None
    if cap and cap < low:
        raise RoutingConfigError("fee.max_mfen: must be 0 (no cap) or at least fee.min_mfen")
    return FeeContract(
        rate_ppm=rate,
        fixed_mfen=fixed,
        min_mfen=low,
        max_mfen=cap or None,
        rounding=rounding,
        quantum_mfen=quantum,
        refund=refund,
        refund_quantum_mfen=refund_quantum,
    )


def _tiers(table: Mapping[str, Any]) -> tuple[Tier, ...]:
    raw = table.get("tiers", [])
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise RoutingConfigError("tiers: must be a list of tables")
    tiers: list[Tier] = []
    for i, item in enumerate(raw):
        where = f"tiers[{i}]"
        entry = _table(item, where)
        _no_unknown_keys(entry, frozenset({"from_fen", "rate_ppm"}), f"{where}.")
        if "from_fen" not in entry or "rate_ppm" not in entry:
            raise RoutingConfigError(f"{where}: needs from_fen and rate_ppm")
        try:
            from_fen = _integer(entry, "from_fen", 0, 0, _MAX_MFEN)
            rate = _integer(entry, "rate_ppm", 0, 0, PPM)
        except RoutingConfigError as exc:
            raise RoutingConfigError(f"{where}.{exc}") from None
        if tiers and from_fen <= tiers[-1].from_fen:
            raise RoutingConfigError(f"{where}.from_fen: tiers must be in increasing order")
        tiers.append(Tier(from_fen, rate))
    return tuple(tiers)


def _moment(value: object, where: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise RoutingConfigError(f"{where}: not an ISO 8601 date-time") from None
    if not isinstance(value, datetime):
        raise RoutingConfigError(f"{where}: must be a date-time")
    if value.tzinfo is None:
        raise RoutingConfigError(f"{where}: needs a UTC offset (e.g. +08:00)")
    return value


def _outages(table: Mapping[str, Any]) -> tuple[Outage, ...]:
    raw = table.get("outages", [])
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise RoutingConfigError("outages: must be a list of tables")
    outages: list[Outage] = []
    for i, item in enumerate(raw):
        where = f"outages[{i}]"
        entry = _table(item, where)
        _no_unknown_keys(entry, frozenset({"start", "end"}), f"{where}.")
        start = _moment(entry.get("start"), f"{where}.start")
        end = _moment(entry.get("end"), f"{where}.end")
        if not start < end:
            raise RoutingConfigError(f"{where}.end: must be after start")
        outages.append(Outage(start, end))
    return tuple(outages)
