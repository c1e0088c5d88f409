"""The system libraries Qt's X11 platform plugin (xcb) loads, checked before Qt starts.

Without one of them Qt prints a line most people never see and aborts, so on a fresh Debian
machine ``make run`` said only "Aborted". The list is what ``ldd`` shows for PySide6's
``plugins/platforms/libqxcb.so`` and ``lib/libQt6XcbQpa.so.6`` beyond what Qt bundles and
what any desktop has (libc, libstdc++), with the Debian package that provides each one.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping, Sequence

# (library, Debian package)
XCB_PLATFORM_LIBRARIES: tuple[tuple[str, str], ...] = (
    ("libxcb.so.1", "libxcb1"),
    ("libX11.so.6", "libx11-6"),
    ("libX11-xcb.so.1", "libx11-xcb1"),
    ("libxcb-cursor.so.0", "libxcb-cursor0"),
    ("libxcb-icccm.so.4", "libxcb-icccm4"),
    ("libxcb-image.so.0", "libxcb-image0"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
    ("libxcb-randr.so.0", "libxcb-randr0"),
    ("libxcb-render.so.0", "libxcb-render0"),
    ("libxcb-render-util.so.0", "libxcb-render-util0"),
    ("libxcb-shape.so.0", "libxcb-shape0"),
    ("libxcb-shm.so.0", "libxcb-shm0"),
    ("libxcb-sync.so.1", "libxcb-sync1"),
    ("libxcb-util.so.1", "libxcb-util1"),
    ("libxcb-xfixes.so.0", "libxcb-xfixes0"),
    ("libxcb-xkb.so.1", "libxcb-xkb1"),
    ("libxkbcommon.so.0", "libxkbcommon0"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libEGL.so.1", "libegl1"),
    ("libGL.so.1", "libgl1"),
    ("libfontconfig.so.1", "libfontconfig1"),
    ("libfreetype.so.6", "libfreetype6"),
    ("libdbus-1.so.3", "libdbus-1-3"),
    ("libglib-2.0.so.0", "libglib2.0-0"),
)


def uses_xcb(environ: Mapping[str, str]) -> bool:
    """Whether Qt will start its X11 platform plugin in this environment."""
    platform = environ.get("QT_QPA_PLATFORM", "").strip()
    if platform:
        # "xcb", "xcb:option=…", or a fallback list such as "wayland;xcb" (the first wins).
        return platform.split(";")[0].split(":")[0] == "xcb"
    if not environ.get("DISPLAY"):
        return False
    on_wayland = environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY")
    return not on_wayland


def missing_libraries(required: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (library, package) pairs whose library the dynamic loader cannot find."""
    missing = []
    for library, package in required:
        try:
            ctypes.CDLL(library)
        except OSError:
            missing.append((library, package))
    return missing


def missing_library_report(
    environ: Mapping[str, str] | None = None,
    required: Sequence[tuple[str, str]] = XCB_PLATFORM_LIBRARIES,
) -> str | None:
    """What to tell the user before Qt would abort, or None when nothing is missing."""
    if not uses_xcb(os.environ if environ is None else environ):
        return None
    missing = missing_libraries(required)
    if not missing:
        return None
    lines = [
        f"missing system library {library}: install the Debian package {package}"
        for library, package in missing
    ]
    packages = " ".join(sorted({package for _library, package in missing}))
    lines.append(f"the console cannot open a window without it: sudo apt-get install {packages}")
    return "\n".join(lines)
