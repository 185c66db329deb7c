"""Reading an import file row by row: CSV with a header, or NDJSON (a case per line).

Each row is validated with the model of `POST /v1/cases`; a rejection names the row, the
field and the reason, never the value (it may be personal data). Row numbers say where
to find the row: in NDJSON its line number; in CSV its record's place after the header
(a spreadsheet's row number minus one). Blank lines are skipped but keep their place.
A CSV rejection names the column; an NDJSON one the dotted path in the object.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import ValidationError

from icrs_shared.errors import FieldError

from ..cases.schemas import CaseCreate
from .schemas import Format

COLUMNS = (
    "external_id",
    "given_name",
    "family_name",
    "aliases",
    "sex",
    "date_of_birth",
    "estimated_age",
    "languages",
    "phone",
    "email",
    "address",
    "document_type",
    "document_number",
    "beneficiary_category",
    "programme_track",
    "area",
    "demobilization_date",
    "vulnerabilities",
)
#: CSV cells holding lists, their items separated by ";".
LIST_SEPARATOR = ";"
#: The longest NDJSON line read; a longer one is rejected.
MAX_LINE = 1024 * 1024

_LISTS = frozenset({"aliases", "languages", "vulnerabilities"})
_PERSON = frozenset(
    {"given_name", "family_name", "aliases", "sex", "date_of_birth", "estimated_age", "languages"}
)
_CONTACT = frozenset({"phone", "email", "address"})
_BOM = b"\xef\xbb\xbf"
_FIELD_MAX, _REASON_MAX = 100, 200

FieldOf = Callable[[Sequence[int | str]], str]


def csv_field(loc: Sequence[int | str]) -> str:
    """The CSV column a validation error is about."""
    names = [part for part in loc if isinstance(part, str)]
    if names[:2] == ["person", "documents"]:
        return "document_number" if names[2:] == ["number"] else "document_type"
    if names == ["person"]:
        # The only error on the person as a whole: neither a birth date nor an age.
        return "date_of_birth"
    return names[-1] if names else "row"


def json_field(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "line"


@dataclass(frozen=True)
class Rejection:
    row: int
    field: str
    reason: str


@dataclass
class Row:
    """A data row: its validated case, or why it is rejected."""

    number: int
    case: CaseCreate | None = None
    rejections: list[Rejection] = field(default_factory=list)
    #: Where a validation error's location points in the file.
    field_of: FieldOf = json_field

    @classmethod
    def rejected(cls, number: int, *problems: tuple[str, str]) -> Row:
        row = cls(number)
        for where, reason in problems:
            row.reject(where, reason)
        return row

    def reject(self, where: str, reason: str) -> None:
        """Reject the row; one reason per field (the first)."""
        self.case = None
        where = where[:_FIELD_MAX]
        if all(r.field != where for r in self.rejections):
            self.rejections.append(Rejection(self.number, where, reason[:_REASON_MAX]))


class HeaderError(ValueError):
    """The CSV header cannot be used: the whole file is refused."""

    def __init__(self, detail: str, errors: list[FieldError]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


def validate(number: int, data: dict[str, Any], field_of: FieldOf) -> Row:
    """A row from the object it holds, validated as a case with an `external_id`."""
    row = Row(number, field_of=field_of)
    if data.get("external_id") is None:
        row.reject("external_id", "Field required")
    try:
        case = CaseCreate.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            row.reject(field_of(error["loc"]), error["msg"])
        return row
    if not row.rejections:
        row.case = case
    return row


# CSV -----------------------------------------------------------------------------


class CsvRows:
    """The rows of a CSV file; the header is read (and checked) when this is made.

    `problems` lists what is wrong with the file as a whole (unknown or repeated
    columns, which are ignored), as rejections of row 0.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        self._reader = csv.reader(self._text, strict=True)
        self.problems: list[Rejection] = []
        self.columns: list[str | None] = self._header()

    def _header(self) -> list[str | None]:
        try:
            record = next((r for r in self._reader if not _blank(r)), None)
        except csv.Error:
            record = None
            detail = "the header row is not valid CSV"
        else:
            detail = "the file has no header row"
        if record is None:
            raise HeaderError(detail, [FieldError(field="header", message=detail, code="header")])
        columns: list[str | None] = []
        for position, raw in enumerate(record, start=1):
            name = raw.strip().lower()
            if name in COLUMNS and name not in columns:
                columns.append(name)
                continue
            columns.append(None)
            reason = "repeated column: only the first is read" if name in COLUMNS else None
            self._problem(name or f"column {position}", reason or "unknown column: ignored")
        if "external_id" not in columns:
            detail = "the header has no external_id column"
            error = FieldError(field="external_id", message=detail, code="missing_column")
            raise HeaderError(detail, [error])
        return columns

    def _problem(self, where: str, reason: str) -> None:
        where = where[:_FIELD_MAX]
        if all(p.field != where for p in self.problems):
            self.problems.append(Rejection(0, where, reason))

    def __iter__(self) -> Iterator[Row]:
        number = 0
        while True:
            number += 1
            try:
                record = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Row.rejected(number, ("row", f"not valid CSV: {exc}"))
                continue
            if _blank(record):
                continue
            if len(record) != len(self.columns):
                reason = f"has {len(record)} cells where the header has {len(self.columns)}"
                yield Row.rejected(number, ("row", reason))
                continue
            known = zip(self.columns, record, strict=True)
            cells = {name: cell for name, cell in known if name is not None}
            yield validate(number, csv_case(cells), csv_field)


def _blank(record: list[str]) -> bool:
    return all(not cell.strip() for cell in record)


def csv_case(cells: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the body of `POST /v1/cases`; empty cells are left out."""
    case: dict[str, Any] = {}
    person: dict[str, Any] = {}
    contact: dict[str, Any] = {}
    document: dict[str, Any] = {}
    for name, cell in cells.items():
        text = cell.strip()
        if not text:
            continue
        value: Any = text
        if name in _LISTS:
            value = [item.strip() for item in text.split(LIST_SEPARATOR) if item.strip()]
        elif name == "sex":
            value = text.lower()
        elif name == "estimated_age":
            value = _number(text)
        if name in _PERSON:
            person[name] = value
        elif name in _CONTACT:
            contact[name] = value
        elif name.startswith("document_"):
            document[name.removeprefix("document_")] = value
        else:
            case[name] = value
    if contact:
        person["contact"] = contact
    if document:
        person["documents"] = [document]
    case["person"] = person
    return case


def _number(text: str) -> int | str:
    """A cell's whole number, as JSON would give it; other text as it is, to be refused."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else text


# NDJSON ----------------------------------------------------------------------------


def ndjson_rows(stream: IO[bytes]) -> Iterator[Row]:
    number = 0
    while line := stream.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            _skip_line(stream)
            yield Row.rejected(number, ("line", f"longer than {MAX_LINE} bytes"))
            continue
        if number == 1:
            line = line.removeprefix(_BOM)
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            yield Row.rejected(number, ("line", "not valid JSON"))
            continue
        if not isinstance(data, dict):
            yield Row.rejected(number, ("line", "must be a JSON object"))
            continue
        yield validate(number, data, json_field)


def _skip_line(stream: IO[bytes]) -> None:
    while (rest := stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
        pass


def read(format: Format, stream: IO[bytes]) -> tuple[list[Rejection], Iterator[Row]]:
    """The file's own problems (rejections of row 0), and its rows."""
    if format == "csv":
        parsed = CsvRows(stream)
        return parsed.problems, iter(parsed)
    return [], ndjson_rows(stream)
