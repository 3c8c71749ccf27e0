"""Files the platform keeps as state (learned cost models, the learning cursor, accepted model versions, the
trusted keyring): each replaced whole and on disk before the call returns.

A rename alone is atomic for readers but not durable: after a power loss it can come back pointing at a file
whose data never reached the disk (an empty file, on ext4 without ``auto_da_alloc`` or on XFS). So the data
is flushed before the rename, and the directory after it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def sync_directory(folder: Path) -> None:
    """Flush ``folder``'s entries (names just created, renamed or linked in it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(target: Path, text: str) -> None:
    """Replace ``target`` with ``text`` (UTF-8): a reader sees the old file or the new one, never part of one,
    and the new one survives a crash or a power loss once this returns. On failure the old file is kept and no
    scratch file is left."""
    fd, scratch = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, target)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    sync_directory(target.parent)
