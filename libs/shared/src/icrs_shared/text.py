"""Text that people type: one line of visible text, email addresses, phone numbers.

Validators refuse what could disguise or break a value (control and format characters,
lone surrogates, private-use code points) rather than pass it on.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

# Joiners some scripts need inside words (Persian, Indic); every other format character
# (bidirectional overrides, zero-width spaces, BOM) can disguise a name and is refused.
_JOINERS = {"\u200c", "\u200d"}
_REFUSED_CATEGORIES = {"Cc", "Cs", "Co", "Cn", "Zl", "Zp"}
_LINE_BREAKS = {"\n", "\r", "\t"}


def visible_text(value: str, *, multiline: bool = False) -> str:
    """NFC text without characters that could disguise or break it; line breaks and tabs
    kept when `multiline`, else inner runs of space collapsed to one."""
    value = unicodedata.normalize("NFC", value)
    for ch in value:
        if multiline and ch in _LINE_BREAKS:
            continue
        category = unicodedata.category(ch)
        if category in _REFUSED_CATEGORIES or (category == "Cf" and ch not in _JOINERS):
            raise ValueError(f"must not contain the character U+{ord(ch):04X}")
    return value if multiline else " ".join(value.split())


def plain_text(value: str) -> str:
    """One line of visible text, NFC-normalized, inner runs of spaces collapsed."""
    value = visible_text(value)
    if not value:
        raise ValueError("must not be blank")
    return value


#: Text a client searches or names things by (a query's filter, an id in a path): no
#: control characters. None is in anything stored, and PostgreSQL refuses NUL in text.
SearchText = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$")]

_EMAIL = re.compile(
    r"^(?=.{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$"
)


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("must be an email address such as referrals@hope.example")
    local, domain = value.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=254),
    AfterValidator(_email),
    Field(
        description="An ASCII address; give an internationalized domain in its xn-- form.",
        examples=["referrals@hope.example"],
    ),
]

_PHONE = re.compile(r"^\+[1-9][0-9 ().-]*[0-9]$")


def _phone(value: str) -> str:
    value = " ".join(value.split())
    digits = sum(ch.isdigit() for ch in value)
    if not _PHONE.fullmatch(value) or not 7 <= digits <= 15:
        raise ValueError("must be an international number: + country code, 7 to 15 digits")
    return value


Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=32),
    AfterValidator(_phone),
    Field(
        description="E.164 digits; spaces, dots, dashes, brackets allowed.",
        examples=["+252 61 0000000"],
    ),
]
