"""Input signatures: inferred from a training frame, compiled once into fast row validators."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

from backend.errors import InputError
from backend.schemas import FeatureSpec
from backend.schemas.common import INT64_MAX, INT64_MIN, shown_number

# A column with at most this many distinct text values is a category, otherwise free text.
MAX_INFERRED_CATEGORIES = 64

Checker = Callable[[Any], Any]


def infer_signature(
    frame: pd.DataFrame,
    *,
    observed_ranges: bool = False,
    optional: Iterable[str] = (),
) -> list[FeatureSpec]:
    """Describe each column of a training frame.

    Observed min/max are recorded only on request: a range seen in training is rarely a
    hard limit of the world (a larger amount is still a valid transaction).
    """
    optional_names = set(optional)
    specs: list[FeatureSpec] = []
    for name in frame.columns:
        column = frame[name]
        # Missing values in training mean the feature is optional in the world as well.
        has_missing = bool(column.isna().any())
        spec: dict[str, Any] = {
            "name": str(name),
            "required": name not in optional_names and not has_missing,
        }
        if column.isna().all():
            # CSV readers turn an always-empty text column into all-NaN floats.
            spec["type"] = "string"
            spec["default"] = ""
        elif pd.api.types.is_bool_dtype(column):
            spec["type"] = "bool"
        elif pd.api.types.is_integer_dtype(column):
            spec["type"] = "int"
        elif pd.api.types.is_float_dtype(column):
            spec["type"] = "float"
        else:
            values = sorted({str(v) for v in column.dropna().unique()})
            if isinstance(column.dtype, pd.CategoricalDtype):
                values = [str(v) for v in column.cat.categories]
            if len(values) <= MAX_INFERRED_CATEGORIES:
                spec["type"] = "category"
                spec["categories"] = values
            else:
                spec["type"] = "string"
        if observed_ranges and spec["type"] in ("int", "float") and len(column.dropna()):
            spec["min"] = float(column.min())
            spec["max"] = float(column.max())
        specs.append(FeatureSpec(**spec))
    return specs


def _number_checker(spec: FeatureSpec, integral: bool) -> Checker:
    low, high = spec.min, spec.max
    kind = "an integer" if integral else "a number"

    def check(value: Any) -> Any:
        # A JSON number with a fraction arrives as exactly float: the common case, first.
        if type(value) is float and not integral:
            if not math.isfinite(value):
                raise ValueError(f"{value!r} is not a finite number")
        else:
            value = _number(value, integral, kind)
        if low is not None and value < low:
            raise ValueError(f"{value!r} is below the allowed minimum {low:g}")
        if high is not None and value > high:
            raise ValueError(f"{value!r} is above the allowed maximum {high:g}")
        return value

    return check


def _number(value: Any, integral: bool, kind: str) -> int | float:
    # bool is an int subclass in Python; a JSON true is not a number to a model.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected {kind}, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if integral:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            value = int(value)
        # Models, the log and its stores hold 64-bit integers: a larger one is no count
        # anyone has, and failed only when the answered prediction was logged.
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{shown_number(value)} is beyond the 64-bit integer range")
        return value
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        # float() of it would round (or overflow past 1e308): refuse as an int feature does.
        raise ValueError(f"{shown_number(value)} is beyond the 64-bit integer range")
    return float(value)


def _bool_checker(_spec: FeatureSpec) -> Checker:
    def check(value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"expected true or false, got {_describe(value)}")

    return check


def _category_checker(spec: FeatureSpec) -> Checker:
    allowed = frozenset(spec.categories or ())
    shown = ", ".join(sorted(allowed)[:12]) + (", ..." if len(allowed) > 12 else "")

    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"expected one of the categories [{shown}], got {_describe(value)}")
        if allowed and value not in allowed:
            raise ValueError(f"unknown category {value!r}; allowed: [{shown}]")
        return value

    return check


def _string_checker(_spec: FeatureSpec) -> Checker:
    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_describe(value)}")
        if len(value) > 10_000:
            raise ValueError("string longer than 10000 characters")
        if "\x00" in value:
            # The log keeps every feature, and PostgreSQL's text cannot hold NUL.
            raise ValueError("text may not contain the NUL character (\\u0000)")
        return value

    return check


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"


_CHECKER_FACTORIES: dict[str, Callable[[FeatureSpec], Checker]] = {
    "float": lambda spec: _number_checker(spec, integral=False),
    "int": lambda spec: _number_checker(spec, integral=True),
    "bool": _bool_checker,
    "category": _category_checker,
    "string": _string_checker,
}


def value_checker(spec: FeatureSpec) -> Checker:
    """The check (and normalisation) of one value of ``spec``'s feature; raises ValueError."""
    return _CHECKER_FACTORIES[spec.type](spec)


class CompiledSignature:
    """Validates and normalises rows (dicts) in signature order; built once per version."""

    def __init__(self, specs: Sequence[FeatureSpec]):
        self.specs = list(specs)
        self.names = [spec.name for spec in self.specs]
        self._known = frozenset(self.names)
        self._checks = [
            (spec.name, spec.required, spec.default, _CHECKER_FACTORIES[spec.type](spec))
            for spec in self.specs
        ]

    def validate_row(self, row: dict[str, Any], where: str) -> dict[str, Any]:
        """Return the row in signature order, or raise InputError naming the field."""
        if not isinstance(row, dict):
            raise InputError(f"expected an object of features, got {_describe(row)}", where)
        unknown = row.keys() - self._known
        if unknown:
            name = sorted(unknown)[0]
            raise InputError(
                f"unknown feature {name!r}; this model takes: {', '.join(self.names)}",
                f"{where}.{name}",
            )
        clean: dict[str, Any] = {}
        for name, required, default, check in self._checks:
            value = row.get(name)
            if value is None:
                if required:
                    raise InputError("required feature is missing", f"{where}.{name}")
                clean[name] = default
                continue
            try:
                clean[name] = check(value)
            except ValueError as exc:
                raise InputError(str(exc), f"{where}.{name}") from None
        return clean

    def validate_rows(self, rows: Sequence[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
        return [self.validate_row(row, f"{prefix}[{i}]") for i, row in enumerate(rows)]
