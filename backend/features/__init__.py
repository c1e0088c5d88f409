"""Feature definitions shared by training and serving (one implementation per model family)."""

from backend.features.fraud import (
    COUNTRIES,
    FRAUD_FEATURES,
    FRAUD_SIGNATURE,
    MERCHANT_CATEGORIES,
    CardEvent,
    FraudFeatureState,
    LabelledCardEvent,
    build_training_frame,
    features_frame,
)
from backend.features.ride_price import CITIES, RIDE_PRICE_FEATURES, RIDE_PRICE_SIGNATURE

__all__ = [
    "CITIES",
    "COUNTRIES",
    "FRAUD_FEATURES",
    "FRAUD_SIGNATURE",
    "MERCHANT_CATEGORIES",
    "RIDE_PRICE_FEATURES",
    "RIDE_PRICE_SIGNATURE",
    "CardEvent",
    "FraudFeatureState",
    "LabelledCardEvent",
    "build_training_frame",
    "features_frame",
]
