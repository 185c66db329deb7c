"""Key files made on first start: private (mode 0600), written once, and the same for
every process that starts at the same time on the same data dir."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# link() is refused by some filesystems (FAT, some network and FUSE mounts).
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """What the file at `path` holds, after writing `make()` to it if it did not exist.

    `make()` must end with a newline: a reader racing a creator that could not link
    waits for it. Warns when the file is readable by others.
    """
    try:
        data = _read_settled(path)
    except FileNotFoundError:
        return _create(path, make())
    if path.stat().st_mode & 0o077:
        log.warning("key file is readable by others", extra={"path": str(path)})
    return data


def replace(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) in one step: readers see the old or the new."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    _write_new(tmp, data)
    os.replace(tmp, path)


def _create(path: Path, data: bytes) -> bytes:
    if not data.endswith(b"\n"):
        raise ValueError("a key file's content must end with a newline")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    _write_new(tmp, data)
    try:
        # link() never replaces an existing file, so exactly one creator wins.
        os.link(tmp, path)
    except FileExistsError:
        return _read_settled(path)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        try:
            _write_new(path, data)
        except FileExistsError:
            return _read_settled(path)
    finally:
        tmp.unlink(missing_ok=True)
    return data


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _read_settled(path: Path, timeout: float = 2.0) -> bytes:
    """The file's bytes, once complete: without link(), a racing creator writes in place."""
    deadline = time.monotonic() + timeout
    while True:
        data = path.read_bytes()
        if data.endswith(b"\n") or time.monotonic() >= deadline:
            return data
        time.sleep(0.01)
