"""Files written whole or not at all.

A reader (another process loading a kept model graph, a trainer resuming from its checkpoint, a client fetching an
object) sees the old content or the new, never a torn file: the content goes to a temporary file on the same file
system, reaches the disk, and is renamed over the target in one step.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def replace_whole(
    path: Path,
    content: bytes | Callable[[BinaryIO], object],
    *,
    tmp_dir: Path | None = None,
    durable: bool = True,
) -> None:
    """Write `content` (bytes, or a function that writes into the open file) to `path`, whole or not at all.

    The folder of `path` is made when missing. The temporary file is made in `tmp_dir` (default: beside `path`; it
    must be on the same file system) under a name no other writer uses, and is removed when anything fails.
    `durable`: flushed to disk before the rename, so a crash right after cannot leave an empty file under the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent if tmp_dir is None else tmp_dir
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["replace_whole"]
