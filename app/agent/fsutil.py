"""Crash-safe file writes: write a temporary file beside the target, fsync, rename.

rename(2) within one file system replaces the target atomically, so a daemon that opens the
path sees either the old or the new content, never a half-written file.

Ownership: the agent runs as root and every file it writes is owned by root (by the agent's
own user, in a test run without root). A daemon that reads
keys after dropping privileges (nginx workers as www-data, Courier's imaplogin as courier) gets
read access through a group only: files 0640 and directories 0750, ``root:<group>``; without a
group, 0600 and 0700. Nobody else can read a key or list the directory (chmod(2), chown(2)).
"""

from __future__ import annotations

import grp
import os
import shutil
import stat
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


def secure_directory(directory: Path, group: str | None) -> None:
    """Create ``directory`` if needed and make it ``root:<group> 0750`` (or ``root 0700``).

    Applied to directories the agent creates and to ones an operator created beforehand (mkdir
    gives 0755: every local user could list the bundles), on every apply, so a changed
    ``bundle_group`` takes effect.
    """
    directory.mkdir(parents=True, exist_ok=True)
    st = os.stat(directory)
    gid = _gid(group)
    if (st.st_uid, st.st_gid) != (os.geteuid(), gid):
        os.chown(directory, os.geteuid(), gid)
    os.chmod(directory, 0o750 if group else 0o700)


def secure_file(path: Path, mode: int, group: str | None) -> None:
    """Give an existing file the owner, group and mode it would get if written now.

    For copies written by an earlier run under another ``bundle_group`` (or none); symbolic
    links are left alone (the agent writes none, and chmod would follow them).
    """
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    gid = _gid(group)
    if (st.st_uid, st.st_gid) != (os.geteuid(), gid):
        os.chown(path, os.geteuid(), gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def _gid(group: str | None) -> int:
    return grp.getgrnam(group).gr_gid if group else os.getegid()
