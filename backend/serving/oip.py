"""Open Inference Protocol v2 tensors <-> rows of named features."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, get_args

from backend.errors import InputError
from backend.registry.loaded import Prediction
from backend.schemas import (
    FEATURE_DATATYPES,
    FeatureSpec,
    InferRequest,
    OipDatatype,
    RequestInput,
    TensorMetadata,
)
from backend.schemas.common import shown_number

KNOWN_DATATYPES: frozenset[str] = frozenset(get_args(OipDatatype))
_INTEGER_DATATYPES = frozenset(d for d in KNOWN_DATATYPES if "INT" in d)
# Which OIP datatypes may carry each feature type (floats accept integers, as JSON does).
_ALLOWED_DATATYPES: dict[str, frozenset[str]] = {
    "float": _INTEGER_DATATYPES | {"FP16", "FP32", "FP64"},
    "int": _INTEGER_DATATYPES,
    "bool": frozenset({"BOOL"}),
    "category": frozenset({"BYTES"}),
    "string": frozenset({"BYTES"}),
}


# The values each integer datatype holds (the OIP datatypes are those of Triton / numpy).
_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    **{f"INT{bits}": (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) for bits in (8, 16, 32, 64)},
    **{f"UINT{bits}": (0, 2**bits - 1) for bits in (8, 16, 32, 64)},
}
# The largest finite magnitude of each float datatype.
_FLOAT_LIMITS: dict[str, float] = {
    "FP16": 65504.0,
    "FP32": 3.4028234663852886e38,
    "FP64": 1.7976931348623157e308,
}


def _flatten(data: list[Any]) -> list[Any]:
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    stack = [data]
    # Iterative flatten in row-major order: nested data may be deep and recursion is slower.
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def _check_tensor(tensor: RequestInput, where: str) -> list[Any]:
    if tensor.datatype not in KNOWN_DATATYPES:
        raise InputError(
            f"unknown datatype {tensor.datatype!r}; expected one of {sorted(KNOWN_DATATYPES)}",
            f"{where}.datatype",
            status=400,
        )
    if any(dim < 0 for dim in tensor.shape):
        raise InputError("shape dimensions must be non-negative", f"{where}.shape", status=400)
    flat = _flatten(tensor.data)
    expected = math.prod(tensor.shape)
    if len(flat) != expected:
        raise InputError(
            f"shape {tensor.shape} needs {expected} values, data has {len(flat)}",
            f"{where}.data",
            status=400,
        )
    return _check_values(flat, tensor.datatype, f"{where}.data")


def _check_values(flat: list[Any], datatype: str, where: str) -> list[Any]:
    """Every value must be one the datatype holds: a tensor says what it carries, and a 38.81
    in an INT64 tensor is a client bug to report, not a float to pass on."""
    if datatype == "BOOL":
        for i, value in enumerate(flat):
            if not isinstance(value, bool):
                raise InputError(f"BOOL holds true or false, got {value!r:.40}", f"{where}[{i}]")
        return flat
    if datatype == "BYTES":
        # Per feature, BYTES carries only text features, whose signature check wants strings;
        # a 2-D BYTES tensor is the documented way to send a mixed row as plain JSON values,
        # each checked against its feature's signature.
        return flat
    if datatype in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[datatype]
        for i, value in enumerate(flat):
            if type(value) is not int:
                if not isinstance(value, float) or isinstance(value, bool):
                    raise InputError(
                        f"{datatype} holds integers, got {value!r:.40}", f"{where}[{i}]"
                    )
                if not value.is_integer():
                    raise InputError(
                        f"{datatype} holds integers, got the fraction {value!r}", f"{where}[{i}]"
                    )
                flat[i] = value = int(value)
            if not low <= value <= high:
                raise InputError(
                    f"{shown_number(value)} is outside the range of {datatype} [{low}, {high}]",
                    f"{where}[{i}]",
                )
        return flat
    limit = _FLOAT_LIMITS[datatype]
    for i, value in enumerate(flat):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{datatype} holds numbers, got {value!r:.40}", f"{where}[{i}]")
        # abs() of a huge int is exact; NaN fails every comparison, so it is refused as well.
        if not abs(value) <= limit:
            raise InputError(
                f"{shown_number(value)} is not a finite number within {datatype}",
                f"{where}[{i}]",
            )
    return flat


def decode_request(
    request: InferRequest, specs: Sequence[FeatureSpec], max_rows: int
) -> list[dict[str, Any]]:
    """Turn OIP inputs into one dict per row: one tensor per feature, or one 2-D tensor."""
    by_name = {spec.name: spec for spec in specs}
    inputs = request.inputs
    if all(tensor.name in by_name for tensor in inputs):
        return _decode_per_feature(inputs, by_name, max_rows)
    if len(inputs) == 1 and len(inputs[0].shape) == 2:
        return _decode_matrix(inputs[0], specs, max_rows)
    stranger = next(t.name for t in inputs if t.name not in by_name)
    raise InputError(
        f"unknown input {stranger!r}: send one tensor per feature "
        f"({', '.join(by_name)}) or one 2-D tensor [rows, {len(specs)}] in that order",
        "inputs",
    )


def _decode_per_feature(
    inputs: list[RequestInput], by_name: dict[str, FeatureSpec], max_rows: int
) -> list[dict[str, Any]]:
    columns: dict[str, list[Any]] = {}
    n_rows: int | None = None
    for i, tensor in enumerate(inputs):
        where = f"inputs[{i}]({tensor.name})"
        if tensor.name in columns:
            raise InputError("the same feature is sent twice", where, status=400)
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InputError(
                f"a feature tensor has shape [rows] or [rows, 1], got {tensor.shape}",
                f"{where}.shape",
                status=400,
            )
        flat = _check_tensor(tensor, where)
        spec = by_name[tensor.name]
        if tensor.datatype not in _ALLOWED_DATATYPES[spec.type]:
            raise InputError(
                f"feature {spec.name!r} is {spec.type}; datatype {tensor.datatype} does not "
                f"carry it (use {FEATURE_DATATYPES[spec.type]})",
                f"{where}.datatype",
            )
        if n_rows is None:
            n_rows = tensor.shape[0]
        elif tensor.shape[0] != n_rows:
            raise InputError(
                f"{tensor.shape[0]} rows, while earlier inputs have {n_rows}",
                f"{where}.shape",
                status=400,
            )
        columns[tensor.name] = flat
    rows = n_rows or 0
    _check_row_count(rows, max_rows)
    names = list(columns)
    values = [columns[name] for name in names]
    return [dict(zip(names, row_values, strict=True)) for row_values in zip(*values, strict=True)]


def _decode_matrix(
    tensor: RequestInput, specs: Sequence[FeatureSpec], max_rows: int
) -> list[dict[str, Any]]:
    where = f"inputs[0]({tensor.name})"
    rows, width = tensor.shape
    if width != len(specs):
        raise InputError(
            f"a 2-D input needs {len(specs)} columns ({', '.join(s.name for s in specs)}), "
            f"got {width}",
            f"{where}.shape",
            status=400,
        )
    _check_row_count(rows, max_rows)
    flat = _check_tensor(tensor, where)
    names = [spec.name for spec in specs]
    return [dict(zip(names, flat[r * width : (r + 1) * width], strict=True)) for r in range(rows)]


def _check_row_count(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise InputError("the request holds no rows", "inputs", status=400)
    if rows > max_rows:
        raise InputError(
            f"{rows} rows in one request; the limit is {max_rows}", "inputs", status=413
        )


def _datatype_of(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def encode_outputs(
    prediction: Prediction, requested: list[str] | None, available: list[str]
) -> list[dict[str, Any]]:
    names = requested or available
    outputs = []
    for name in names:
        if name == "predict":
            labels = prediction.labels
            datatype = _datatype_of(labels)
            data = [str(v) for v in labels] if datatype == "BYTES" else labels
            outputs.append(
                {"name": name, "shape": [len(labels)], "datatype": datatype, "data": data}
            )
        elif name == "predict_proba" and prediction.probabilities is not None:
            proba = prediction.probabilities
            width = len(proba[0]) if proba else 0
            outputs.append(
                {
                    "name": name,
                    "shape": [len(proba), width],
                    "datatype": "FP64",
                    "data": [p for row in proba for p in row],
                }
            )
    return outputs


def output_names(task: str, has_proba: bool) -> list[str]:
    return ["predict", "predict_proba"] if task == "classification" and has_proba else ["predict"]


def check_requested_outputs(request: InferRequest, available: list[str]) -> list[str] | None:
    if not request.outputs:
        return None
    names = [output.name for output in request.outputs]
    for i, name in enumerate(names):
        if name not in available:
            raise InputError(
                f"unknown output {name!r}; this model gives {', '.join(available)}",
                f"outputs[{i}].name",
                status=400,
            )
    return names


def input_metadata(specs: Sequence[FeatureSpec]) -> list[TensorMetadata]:
    return [
        TensorMetadata(name=spec.name, datatype=FEATURE_DATATYPES[spec.type], shape=[-1])
        for spec in specs
    ]


def output_metadata(
    task: str, has_proba: bool, class_labels: list[Any] | None
) -> list[TensorMetadata]:
    predict_type = _datatype_of(class_labels) if class_labels else "FP64"
    outputs = [TensorMetadata(name="predict", datatype=predict_type, shape=[-1])]
    if "predict_proba" in output_names(task, has_proba):
        width = len(class_labels) if class_labels else -1
        outputs.append(TensorMetadata(name="predict_proba", datatype="FP64", shape=[-1, width]))
    return outputs
