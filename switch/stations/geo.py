"""Distances between stations and customers, in whole metres, from e6 coordinates.

Coordinates are stored as integer micro-degrees (exact from the configured decimal strings);
a distance is a float computation (haversine on the mean Earth radius) rounded to metres,
which is far finer than "which station is nearest" needs. The error of the sphere against
the ellipsoid (< 0.5 %) does not change an ordering a customer would notice.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["EARTH_RADIUS_M", "distance_m", "latitude_span_e6"]

EARTH_RADIUS_M: Final = 6_371_008.8  # IUGG mean radius
_E6: Final = 1_000_000


def distance_m(lat1_e6: int, lon1_e6: int, lat2_e6: int, lon2_e6: int) -> int:
    """Great-circle distance in metres, rounded to the nearest metre."""
    phi1 = math.radians(lat1_e6 / _E6)
    phi2 = math.radians(lat2_e6 / _E6)
    dphi = phi2 - phi1
    dlambda = math.radians((lon2_e6 - lon1_e6) / _E6)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return round(2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a))))


def latitude_span_e6(radius_m: int) -> int:
    """Micro-degrees of latitude that ``radius_m`` spans at most (rounded up): a cheap
    prefilter a query can apply in SQL before computing exact distances."""
    return math.ceil(radius_m / (EARTH_RADIUS_M * math.pi / 180) * _E6) + 1
