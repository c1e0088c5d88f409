"""Ride-price (surge multiplier) features: a stateless request, so the signature is the module.

Unlike fraud, every ride feature is known at request time (no history), so there is nothing to
compute online beyond what the client sends.
"""

from __future__ import annotations

from backend.schemas import FeatureSpec

CITIES: tuple[str, ...] = ("Berlin", "Paris", "Amsterdam", "Madrid", "Rome", "London")
SURGE_MIN = 1.0
SURGE_MAX = 3.5

RIDE_PRICE_SIGNATURE: list[FeatureSpec] = [
    FeatureSpec(name="distance_km", type="float", min=0, max=300),
    FeatureSpec(name="duration_min", type="float", min=0, max=600, description="estimated"),
    FeatureSpec(name="hour", type="int", min=0, max=23, description="local hour of pick-up"),
    FeatureSpec(name="weekday", type="int", min=0, max=6, description="0 = Monday"),
    FeatureSpec(name="city", type="category", categories=list(CITIES)),
    FeatureSpec(name="rain", type="bool"),
    FeatureSpec(
        name="demand_index",
        type="float",
        min=0,
        max=10,
        description="ride requests in the area, relative to normal",
    ),
    FeatureSpec(name="drivers_available", type="int", min=0, max=5000),
]
RIDE_PRICE_FEATURES: tuple[str, ...] = tuple(spec.name for spec in RIDE_PRICE_SIGNATURE)
