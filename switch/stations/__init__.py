"""Stations as reference data: seeding from the config, opening hours, distances, the
customer-facing station views, pumps opened and closed by staff, and price sets."""

from .audit import audit, staff_actor
from .geo import distance_m, latitude_span_e6
from .hours import DAYS, OpeningHours, check_timezone, open_now, parse_opening_hours
from .prices import (
    apply_due_price_sets,
    apply_price_set,
    insert_applied_set,
    prices_for_pump,
    pump_set_prices,
)
from .queries import (
    FreePumps,
    current_prices,
    current_prices_by_station,
    pump_nozzles,
    set_pump_open,
    station,
    stations_near,
)
from .reference import SeedResult, seed_reference

__all__ = [
    "DAYS",
    "FreePumps",
    "OpeningHours",
    "SeedResult",
    "apply_due_price_sets",
    "apply_price_set",
    "audit",
    "check_timezone",
    "current_prices",
    "current_prices_by_station",
    "distance_m",
    "insert_applied_set",
    "latitude_span_e6",
    "open_now",
    "parse_opening_hours",
    "prices_for_pump",
    "pump_nozzles",
    "pump_set_prices",
    "seed_reference",
    "set_pump_open",
    "staff_actor",
    "station",
    "stations_near",
]
