"""Atomic text writes with ordinary permissions.

``checkpoint.atomic_write_text`` goes through ``tempfile.mkstemp``, which creates files readable by
the owner only (0600); reports, metrics and CSVs are meant to be shared, so they get the usual
``0666 & ~umask`` after the atomic replace.
"""
from __future__ import annotations

import os
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, with normal (umask) permissions."""
    from ..checkpoint import atomic_write_text

    path = Path(path)
    atomic_write_text(path, text)
    try:
        os.chmod(path, 0o666 & ~_umask())
    except OSError:  # pragma: no cover - e.g. a filesystem without permissions
        pass
    return path
