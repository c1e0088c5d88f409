"""Content-addressed model files: stored by sha256, verified on every load.

skops is the safe format. pickle and joblib run arbitrary code on load, so they are accepted
only with an explicit trust flag, and the name of whoever gave it is recorded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from backend.errors import ArtifactIntegrityError, InputError

ArtifactFormat = Literal["skops", "pickle", "joblib"]
_SUFFIX_FORMATS: dict[str, ArtifactFormat] = {
    ".skops": "skops",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".joblib": "joblib",
}
_ZIP_MAGIC = b"PK\x03\x04"


def detect_format(filename: str, data: bytes) -> ArtifactFormat:
    suffix = Path(filename).suffix.lower()
    if suffix in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffix]
    if data.startswith(_ZIP_MAGIC):
        return "skops"
    raise InputError(
        f"cannot tell the format of {filename!r}: use a .skops file "
        "(or .pkl/.joblib with the trust flag)",
        "artifact",
    )


def untrusted_skops_types(data: bytes) -> list[str]:
    try:
        import skops.io as sio  # imported here, not on top: see load

        return list(sio.get_untrusted_types(data=data))
    except Exception as exc:  # skops raises several types for a corrupt archive
        raise InputError(f"not a readable skops file: {exc}", "artifact") from None


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = root

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store bytes under their sha256 (idempotent) and return the digest."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if target.exists() and self._digest_of(target) == digest:
            return digest
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the owner's only
        # Write-then-rename: a crash never leaves a half-written artifact under a valid name.
        handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, target)
        return digest

    @contextmanager
    def staged(self, data: bytes) -> Iterator[Path]:
        """``data`` in a private file beside the artifacts, removed afterwards: what the
        model probe loads before the file is accepted (a refused file is never stored)."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=self.root, prefix=".probe-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            yield Path(temp_name)
        finally:
            Path(temp_name).unlink(missing_ok=True)

    def read_verified(self, sha256: str) -> bytes:
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactIntegrityError(
                f"artifact file {path} is missing", "artifact_sha256"
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArtifactIntegrityError(
                f"artifact {path} was modified after registration "
                f"(sha256 {actual[:12]}..., registered {sha256[:12]}...)",
                "artifact_sha256",
            )
        return data

    def load(self, sha256: str, fmt: str, trusted_types: list[str], trusted_by: str | None) -> Any:
        data = self.read_verified(sha256)
        if fmt == "skops":
            # Imported where a model is read: skops lists scikit-learn's types on import
            # (~2 s of CPU), which a process that never loads a model (the watcher, the
            # CLI's queries) should not pay.
            import skops.io as sio

            return sio.loads(data, trusted=trusted_types)
        if trusted_by is None:
            raise ArtifactIntegrityError(
                f"{fmt} artifact has no recorded trust; refusing to load it", "artifact_format"
            )
        # joblib.load reads both joblib and plain pickle files; only reached with trust recorded.
        import joblib

        return joblib.load(self.path_for(sha256))

    @staticmethod
    def _digest_of(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()
