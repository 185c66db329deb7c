"""Where an uploaded file waits while it is imported: an anonymous temporary file, sealed.

The file holds personal data in clear, so it never touches the disk in clear: it is
written in blocks sealed with AES-256-GCM under a key that lives only in this process's
memory. The temporary file has no name (it is unlinked at once) and the key dies with
the process, so what a crash leaves on disk cannot be read by anyone.
"""

from __future__ import annotations

import io
import tempfile
from typing import IO, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Plaintext bytes per sealed block.
BLOCK = 64 * 1024
_LENGTH = 4


class SpoolError(RuntimeError):
    """The spooled file does not read back as it was written."""


class SealedSpool:
    """Write the upload with `write()`, end it with `finish()`, read it with `open()`."""

    def __init__(self) -> None:
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        # Closed by close(): the spool outlives the request that fills it.
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="icrs-import-")  # noqa: SIM115
        self._pending = bytearray()
        self._blocks = 0
        self._finished = False
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._finished:
            raise SpoolError("the spool is finished")
        self.size += len(data)
        self._pending += data
        while len(self._pending) >= BLOCK:
            self._seal(bytes(self._pending[:BLOCK]))
            del self._pending[:BLOCK]

    def finish(self) -> None:
        if not self._finished:
            if self._pending:
                self._seal(bytes(self._pending))
                self._pending.clear()
            self._file.flush()
            self._finished = True

    def open(self) -> io.BufferedReader:
        """The plaintext, from the start (one reader at a time)."""
        self.finish()
        self._file.seek(0)
        return io.BufferedReader(_Reader(self), buffer_size=BLOCK)

    def close(self) -> None:
        self._pending.clear()
        self._file.close()

    def __enter__(self) -> SealedSpool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _seal(self, block: bytes) -> None:
        sealed = self._aead.encrypt(_nonce(self._blocks), block, None)
        self._file.write(len(sealed).to_bytes(_LENGTH, "big") + sealed)
        self._blocks += 1

    def _unseal(self, index: int) -> bytes:
        if index >= self._blocks:
            return b""
        head = self._file.read(_LENGTH)
        sealed = self._file.read(int.from_bytes(head, "big")) if len(head) == _LENGTH else b""
        try:
            return self._aead.decrypt(_nonce(index), sealed, None)
        except Exception:
            raise SpoolError("the spooled file was changed or cut short") from None


def _nonce(index: int) -> bytes:
    # The key is used for one file only, so a block counter is a unique nonce; it also
    # binds each block to its place, so blocks cannot be reordered unnoticed.
    return index.to_bytes(12, "big")


class _Reader(io.RawIOBase):
    def __init__(self, spool: SealedSpool) -> None:
        self._spool = spool
        self._index = 0
        self._block = b""
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._offset >= len(self._block):
            self._block = self._spool._unseal(self._index)
            self._index += 1
            self._offset = 0
            if not self._block:
                return 0
        n = min(len(view), len(self._block) - self._offset)
        view[:n] = self._block[self._offset : self._offset + n]
        self._offset += n
        return n
