"""Service areas: OCHA P-codes, hierarchical by prefix (`SO` ⊃ `SO11` ⊃ `SO1101`)."""

from __future__ import annotations

import re

PCODE = re.compile(r"^[A-Z]{2}[0-9]{0,12}$")
#: What a query may give (any case: it is upper-cased before use).
PCODE_QUERY_PATTERN = r"^[A-Za-z]{2}[0-9]{0,12}$"


def normalize_pcode(value: str) -> str:
    """The P-code in upper case; ValueError when it is not one."""
    code = value.strip().upper()
    if not PCODE.fullmatch(code):
        raise ValueError("must be a P-code: two letters and up to 12 digits, such as SO1101")
    return code


def covering_codes(area: str) -> list[str]:
    """The codes whose services cover `area`: the area itself and every ancestor.

    P-code levels use a fixed number of digits per country, so every prefix of the code
    from the country up is a candidate ancestor; codes that are not real areas simply
    match no service.
    """
    return [area[:n] for n in range(2, len(area) + 1)]
