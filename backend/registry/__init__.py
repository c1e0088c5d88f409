"""Model registry: names, versions, artifacts, signatures and validity assets."""

from backend.registry.artifacts import ArtifactStore
from backend.registry.loaded import LoadedVersion, Prediction
from backend.registry.service import Registry, parse_version
from backend.registry.signature import CompiledSignature, infer_signature

__all__ = [
    "ArtifactStore",
    "CompiledSignature",
    "LoadedVersion",
    "Prediction",
    "Registry",
    "infer_signature",
    "parse_version",
]
