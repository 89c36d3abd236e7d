"""Crash-safe file writes: write a temporary file beside the target, fsync, rename.

rename(2) within one file system replaces the target atomically, so a daemon that opens the
path sees either the old or the new content, never a half-written file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, mode: int = 0o600, group: str | None = None) -> None:
    """Write ``data`` to ``path`` (no rename): the caller renames staged files itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        if group:
            shutil.chown(path, group=group)
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(data)
            out.flush()
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600, group: str | None = None) -> None:
    tmp = path.with_name(f".{path.name}.certpost-tmp")
    write_file(tmp, data, mode, group)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
