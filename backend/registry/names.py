"""What a model name may be: one rule for registration and for names that refer to a model."""

from __future__ import annotations

MAX_MODEL_NAME = 128
MODEL_NAME_RULE = "model names use letters, digits, '-', '_' and '.', at most 128 characters"


def is_model_name(name: str) -> bool:
    return 0 < len(name) <= MAX_MODEL_NAME and all(c.isalnum() or c in "-_." for c in name)
