"""A client token's input constraints, typed by the signatures of the models it may use.

A constraint is compared with validated input values, so it must hold values of the
feature's type: ``hour=12`` typed on the command line is the integer 12 for an int feature,
never the string "12" (which no input could ever equal). A constraint that could never apply
(a feature the model does not take, a value the feature cannot have) is refused when the
token is made, not discovered when every request fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from backend.errors import InputError
from backend.registry.signature import value_checker
from backend.schemas import FeatureSpec

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


def typed_constraints(
    signatures: Mapping[str, Sequence[FeatureSpec]], constraints: Mapping[str, Sequence[Any]]
) -> dict[str, list[Any]]:
    """``constraints`` with each value of the type its feature has in every model of
    ``signatures`` (the token's models), or an InputError naming the constraint."""
    if constraints and not signatures:
        raise InputError(
            "input constraints need a token scoped to models (--models): they are checked "
            "against those models' features",
            "constraints",
        )
    typed: dict[str, list[Any]] = {}
    for feature, values in constraints.items():
        field = f"constraints.{feature}"
        if not values:
            raise InputError("give at least one allowed value", field)
        chosen: list[Any] | None = None
        chosen_model = ""
        for model, specs in signatures.items():
            spec = next((s for s in specs if s.name == feature), None)
            if spec is None:
                names = ", ".join(s.name for s in specs)
                raise InputError(
                    f"model {model!r} has no feature {feature!r} (its features: {names})", field
                )
            converted = [_typed(spec, value, f"{field}[{i}]") for i, value in enumerate(values)]
            if chosen is None:
                chosen, chosen_model = converted, model
            elif converted != chosen:
                # One stored value must equal the validated input of every model: a feature
                # typed differently in two models would refuse every request to one of them.
                raise InputError(
                    f"feature {feature!r} has different types in models {chosen_model!r} and "
                    f"{model!r}: one constraint cannot apply to both; make one token per model",
                    field,
                )
        typed[feature] = sorted(set(chosen or []), key=repr)
    return typed


def _typed(spec: FeatureSpec, value: Any, field: str) -> Any:
    """``value`` (typed on a command line as text, or a JSON value) as the feature's type."""
    try:
        return value_checker(spec)(_from_text(spec, value) if isinstance(value, str) else value)
    except ValueError as exc:
        raise InputError(
            f"not a value of the {spec.type} feature {spec.name!r}: {exc}", field
        ) from None


def _from_text(spec: FeatureSpec, text: str) -> Any:
    text = text.strip()
    if spec.type == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if spec.type == "float":
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{text!r} is not a finite number")
        return number
    if spec.type == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    return text
