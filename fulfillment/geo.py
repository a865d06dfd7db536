"""Distance for order routing: great-circle km between a node and the ship-to.

Coordinates come from the address's latitude/longitude when set, otherwise from an approximate
centroid of the US ZIP code's first two digits (one representative city per prefix: good to a
few hundred km, enough to prefer the nearer coast). Other countries without coordinates have no
distance, and routing then lets the next tie-breaker decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    lat: float
    lon: float


# First two ZIP digits -> a representative city's coordinates.
US_ZIP2: dict[str, tuple[float, float]] = {
    "00": (18.40, -66.10),
    "01": (42.10, -72.59),
    "02": (42.36, -71.06),
    "03": (42.99, -71.46),
    "04": (43.66, -70.26),
    "05": (44.48, -73.21),
    "06": (41.76, -72.68),
    "07": (40.73, -74.17),
    "08": (40.22, -74.76),
    "10": (40.75, -73.99),
    "11": (40.72, -73.60),
    "12": (42.65, -73.75),
    "13": (43.05, -76.15),
    "14": (42.90, -78.20),
    "15": (40.44, -79.99),
    "16": (41.10, -79.50),
    "17": (40.27, -76.88),
    "18": (40.90, -75.70),
    "19": (39.95, -75.17),
    "20": (38.90, -77.04),
    "21": (39.29, -76.61),
    "22": (38.50, -77.80),
    "23": (37.30, -76.90),
    "24": (37.27, -79.94),
    "25": (38.35, -81.63),
    "26": (39.30, -80.30),
    "27": (35.90, -79.40),
    "28": (35.23, -80.84),
    "29": (34.00, -81.03),
    "30": (33.75, -84.39),
    "31": (32.20, -82.50),
    "32": (29.50, -82.00),
    "33": (26.90, -81.20),
    "34": (27.50, -81.80),
    "35": (33.52, -86.80),
    "36": (31.60, -87.00),
    "37": (36.16, -86.78),
    "38": (35.10, -89.50),
    "39": (32.30, -90.18),
    "40": (38.25, -85.76),
    "41": (37.90, -84.00),
    "42": (37.20, -87.00),
    "43": (40.00, -82.99),
    "44": (41.40, -81.70),
    "45": (39.10, -84.50),
    "46": (39.77, -86.16),
    "47": (38.50, -86.80),
    "48": (42.50, -83.20),
    "49": (43.00, -85.67),
    "50": (41.60, -93.60),
    "51": (42.50, -96.40),
    "52": (42.00, -91.60),
    "53": (43.04, -87.90),
    "54": (44.50, -89.00),
    "55": (44.98, -93.27),
    "56": (46.00, -95.00),
    "57": (44.00, -99.00),
    "58": (47.00, -100.00),
    "59": (46.80, -110.00),
    "60": (41.88, -87.63),
    "61": (41.00, -89.40),
    "62": (39.00, -89.60),
    "63": (38.63, -90.20),
    "64": (39.10, -94.58),
    "65": (37.80, -92.80),
    "66": (38.90, -95.30),
    "67": (37.69, -97.34),
    "68": (41.26, -96.00),
    "69": (41.10, -100.80),
    "70": (29.95, -90.07),
    "71": (32.00, -92.50),
    "72": (34.75, -92.29),
    "73": (35.47, -97.52),
    "74": (36.15, -95.99),
    "75": (32.78, -96.80),
    "76": (32.75, -97.33),
    "77": (29.76, -95.37),
    "78": (29.60, -98.30),
    "79": (32.50, -102.50),
    "80": (39.74, -104.99),
    "81": (38.50, -106.50),
    "82": (42.80, -106.30),
    "83": (43.60, -115.00),
    "84": (40.76, -111.89),
    "85": (33.45, -112.07),
    "86": (34.50, -111.50),
    "87": (35.08, -106.65),
    "88": (32.30, -106.50),
    "89": (36.17, -115.14),
    "90": (34.05, -118.24),
    "91": (34.20, -118.30),
    "92": (33.30, -117.20),
    "93": (35.80, -119.50),
    "94": (37.77, -122.42),
    "95": (38.00, -121.60),
    "96": (40.60, -122.40),
    "97": (45.52, -122.68),
    "98": (47.61, -122.33),
    "99": (47.66, -117.43),
}


def postal_centroid(country_code: str, postal_code: str) -> Point | None:
    if (country_code or "US").upper() != "US":
        return None
    digits = "".join(ch for ch in (postal_code or "") if ch.isdigit())
    if len(digits) < 2:
        return None
    found = US_ZIP2.get(digits[:2])
    return Point(*found) if found else None


def point_of(lat, lon, country_code: str = "", postal_code: str = "") -> Point | None:
    """Coordinates when known, else the postal-code centroid approximation, else None."""
    if lat is not None and lon is not None:
        return Point(float(lat), float(lon))
    return postal_centroid(country_code, postal_code)


def distance_km(a: Point | None, b: Point | None) -> float | None:
    if a is None or b is None:
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))
