"""The two benchmark models, a pool of valid request bodies for each, and their registration.

Both servers load the very same .skops file, so any difference in the numbers is serving
overhead, not a different model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from backend.auth.tokens import Principal
from backend.schemas import (
    EndToEndExample,
    FeatureSpec,
    FeatureType,
    LabelledExample,
    ValidityAssets,
)
from backend.settings import Settings
from backend.workspace import Workspace

Row = dict[str, Any]

LR20_FEATURES = [f"f{i}" for i in range(20)]
MERCHANT_CATEGORIES = ["grocery", "fuel", "travel", "electronics", "fashion", "gaming", "bills"]
COUNTRIES = ["DE", "FR", "US", "GB", "NL", "BR"]
# Name -> signature type; ints stay ints on the wire, as a real client would send them.
FRAUD_NUMERIC: dict[str, FeatureType] = {
    "amount": "float",
    "hour": "int",
    "tx_count_24h": "int",
    "avg_amount_30d": "float",
    "distance_km": "float",
    "account_age_days": "int",
}
FRAUD_CATEGORIES = {"merchant_category": MERCHANT_CATEGORIES, "country": COUNTRIES}
TRAINING_ROWS = 4_000


@dataclass
class BenchModel:
    name: str
    artifact: Path
    # Column order for a numpy-fitted model (the bare app gets it on its command line).
    feature_names: list[str]
    signature: list[FeatureSpec]
    trusted_types: list[str]
    bodies: list[bytes]
    validity: ValidityAssets
    sample_rows: list[Row] = field(default_factory=list)


def _lr20_rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[Row]]:
    matrix = np.round(rng.normal(0.0, 1.0, (n, len(LR20_FEATURES))), 6)
    rows = [
        {name: float(v) for name, v in zip(LR20_FEATURES, line, strict=True)} for line in matrix
    ]
    return matrix, rows


def _fraud_rows(rng: np.random.Generator, n: int) -> list[Row]:
    amounts = np.round(rng.gamma(2.0, 60.0, n), 2)
    hours = rng.integers(0, 24, n)
    counts = rng.poisson(3.0, n)
    averages = np.round(rng.gamma(2.0, 50.0, n), 2)
    distances = np.round(rng.exponential(30.0, n), 3)
    ages = rng.integers(1, 3_650, n)
    merchants = rng.choice(MERCHANT_CATEGORIES, n)
    countries = rng.choice(COUNTRIES, n, p=[0.35, 0.2, 0.2, 0.1, 0.1, 0.05])
    # Plain Python values: the validity assets and JSON bodies must not carry numpy scalars.
    return [
        {
            "amount": float(amounts[i]),
            "hour": int(hours[i]),
            "tx_count_24h": int(counts[i]),
            "avg_amount_30d": float(averages[i]),
            "distance_km": float(distances[i]),
            "account_age_days": int(ages[i]),
            "merchant_category": str(merchants[i]),
            "country": str(countries[i]),
        }
        for i in range(n)
    ]


def _fraud_labels(rng: np.random.Generator, frame: pd.DataFrame) -> np.ndarray:
    score = (
        frame["amount"] / frame["avg_amount_30d"].clip(lower=1.0)
        + frame["distance_km"] / 60.0
        + (frame["hour"] < 6) * 1.0
        + frame["merchant_category"].isin(["electronics", "gaming"]) * 0.8
        + (frame["country"] == "BR") * 1.0
        - np.log1p(frame["account_age_days"]) / 3.0
    )
    return (score + rng.normal(0.0, 0.7, len(frame)) > 1.5).astype(int).to_numpy()


def _validity(rows: list[Row], predict: Callable[[list[Row]], list[int]]) -> ValidityAssets:
    expected = predict(rows[:1])[0]
    labelled = rows[:20]
    labels = predict(labelled)
    return ValidityAssets(
        end_to_end=[EndToEndExample(inputs=rows[0], expected=int(expected))],
        confidence_set=[
            LabelledExample(inputs=row, label=label)
            for row, label in zip(labelled, labels, strict=True)
        ],
        metric="accuracy",
        acceptable_range=(0.0, 1.0),
    )


def _save(estimator: Any, path: Path) -> list[str]:
    data = sio.dumps(estimator)
    path.write_bytes(data)
    # Our own freshly written file: whatever skops does not trust by default is safe here.
    return sorted(sio.get_untrusted_types(data=data))


def _bodies(rows: list[Row]) -> list[bytes]:
    return [orjson.dumps({"instances": [row]}) for row in rows]


def build_lr20(out_dir: Path, n_bodies: int, seed: int = 20) -> BenchModel:
    rng = np.random.default_rng(seed)
    matrix, _ = _lr20_rows(rng, TRAINING_ROWS)
    weights = rng.normal(0.0, 1.0, len(LR20_FEATURES))
    labels = (matrix @ weights + rng.normal(0.0, 1.0, TRAINING_ROWS) > 0).astype(int)
    # Fitted on a bare array: no feature_names_in_, so both servers feed it a numpy matrix.
    model = LogisticRegression(max_iter=1_000).fit(matrix, labels)
    path = out_dir / "lr20.skops"
    trusted = _save(model, path)
    _, rows = _lr20_rows(rng, n_bodies)

    def predict(batch: list[Row]) -> list[int]:
        array = np.array([[row[n] for n in LR20_FEATURES] for row in batch])
        return [int(v) for v in model.predict(array)]

    return BenchModel(
        name="lr20",
        artifact=path,
        feature_names=list(LR20_FEATURES),
        signature=[FeatureSpec(name=n, type="float") for n in LR20_FEATURES],
        trusted_types=trusted,
        bodies=_bodies(rows),
        validity=_validity(rows, predict),
        sample_rows=rows[:3],
    )


def build_pipeline(out_dir: Path, n_bodies: int, seed: int = 8) -> BenchModel:
    rng = np.random.default_rng(seed)
    columns = list(FRAUD_NUMERIC) + list(FRAUD_CATEGORIES)
    frame = pd.DataFrame.from_records(_fraud_rows(rng, TRAINING_ROWS), columns=columns)
    labels = _fraud_labels(rng, frame)
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(FRAUD_CATEGORIES)),
            ("num", StandardScaler(), list(FRAUD_NUMERIC)),
        ]
    )
    model = Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=2_000))])
    model.fit(frame, labels)
    path = out_dir / "pipeline.skops"
    trusted = _save(model, path)
    rows = _fraud_rows(rng, n_bodies)
    signature = [FeatureSpec(name=n, type=t) for n, t in FRAUD_NUMERIC.items()]
    signature += [
        FeatureSpec(name=n, type="category", categories=sorted(values))
        for n, values in FRAUD_CATEGORIES.items()
    ]

    def predict(batch: list[Row]) -> list[int]:
        design = pd.DataFrame.from_records(batch, columns=columns)
        return [int(v) for v in model.predict(design)]

    return BenchModel(
        name="pipeline",
        artifact=path,
        feature_names=columns,
        signature=signature,
        trusted_types=trusted,
        bodies=_bodies(rows),
        validity=_validity(rows, predict),
        sample_rows=rows[:3],
    )


def build_models(out_dir: Path, n_bodies: int = 1_000) -> list[BenchModel]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [build_lr20(out_dir, n_bodies), build_pipeline(out_dir, n_bodies)]


def sqlite_url(data_dir: Path) -> str:
    # The URL `serve --data-dir D` derives itself; spelled out so an exported
    # SERVEDECK_DATABASE_URL cannot send the registration somewhere else.
    return f"sqlite:///{data_dir.resolve() / 'servedeck.db'}"


BENCH_ADMIN = Principal(name="bench", role="admin")


def register_version(workspace: Workspace, name: str, model: BenchModel) -> str:
    """Register one built model as a new version of ``name``; returns its version."""
    info = workspace.registry.register_version(
        name,
        model.artifact.read_bytes(),
        filename=model.artifact.name,
        validity=model.validity,
        registered_by="bench",
        signature=model.signature,
        trusted_types=model.trusted_types,
    )
    return info.version


def register_models(data_dir: Path, models: list[BenchModel]) -> str:
    """Register and activate every model in a fresh data dir; returns the admin token."""
    workspace = Workspace.open(Settings.load(data_dir=data_dir, database_url=sqlite_url(data_dir)))
    try:
        for model in models:
            version = register_version(workspace, model.name, model)
            workspace.deploy.deploy(model.name, version, "benchmark setup", BENCH_ADMIN)
        return workspace.admin_token()
    finally:
        workspace.close()
