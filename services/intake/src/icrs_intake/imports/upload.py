"""Receiving an import file: its format from the Content-Type, its body streamed into a
sealed spool with a size limit, checked to be UTF-8 text with something in it."""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from icrs_shared.errors import ContentTooLarge, DomainError, FieldError, Invalid

from .rows import CsvRows, HeaderError
from .running import RunningImports, Slot
from .schemas import Format
from .spool import SealedSpool

_MIB = 1024 * 1024

MEDIA_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
}


class UnsupportedMediaType(DomainError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


@dataclass
class Upload:
    """A received file, and the slot it holds among the running imports. Whoever takes
    it over (the import's task) closes it; until then, `receive` does."""

    format: Format
    spool: SealedSpool
    slot: Slot
    fingerprint: str
    taken: bool = field(default=False)

    def close(self) -> None:
        self.spool.close()
        self.slot.release()

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def format_of(content_type: str | None) -> Format:
    media, _, params = (content_type or "").partition(";")
    found = MEDIA_TYPES.get(media.strip().lower())
    charset = _param(params, "charset")
    if found is None or charset not in (None, "utf-8", "utf8"):
        raise UnsupportedMediaType(
            "send the file as text/csv or application/x-ndjson (application/jsonl), in UTF-8"
        )
    return found


def _param(params: str, name: str) -> str | None:
    for part in params.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"').lower()
    return None


@asynccontextmanager
async def receive(
    running: RunningImports,
    body: AsyncIterator[bytes],
    *,
    format: Format,
    declared_size: str | None,
    limit: int,
) -> AsyncIterator[Upload]:
    """The body in a sealed spool; 413 beyond `limit` bytes, 422 for an empty file, text
    that is not UTF-8, or a CSV header without `external_id`."""
    if declared_size is not None and declared_size.isdigit() and int(declared_size) > limit:
        raise _too_large(limit)
    slot = running.reserve()
    try:
        upload = Upload(format, SealedSpool(), slot, "")
    except BaseException:
        slot.release()
        raise
    try:
        await _read(body, upload, limit)
        if upload.format == "csv":
            _check_header(upload.spool)
        yield upload
    finally:
        if not upload.taken:
            upload.close()


async def _read(body: AsyncIterator[bytes], upload: Upload, limit: int) -> None:
    digest = hashlib.sha256(f"POST /v1/imports {upload.format}\n".encode())
    text = codecs.getincrementaldecoder("utf-8")()
    blank = True
    try:
        async for chunk in body:
            if upload.spool.size + len(chunk) > limit:
                raise _too_large(limit)
            text.decode(chunk)
            blank = blank and not chunk.strip()
            digest.update(chunk)
            upload.spool.write(chunk)
        text.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _invalid("body", "the file is not UTF-8 text", "encoding") from None
    if blank:
        raise _invalid("body", "the file is empty", "empty")
    upload.spool.finish()
    upload.fingerprint = digest.hexdigest()


def _check_header(spool: SealedSpool) -> None:
    with spool.open() as stream:
        try:
            CsvRows(stream)
        except HeaderError as exc:
            raise Invalid(exc.detail, errors=exc.errors) from None


def _too_large(limit: int) -> ContentTooLarge:
    size = f"{limit // _MIB} MiB" if limit >= _MIB else f"{limit} bytes"
    return ContentTooLarge(f"the file is larger than {size}: split it into smaller files")


def _invalid(where: str, message: str, code: str) -> Invalid:
    return Invalid(message, errors=[FieldError(field=where, message=message, code=code)])
