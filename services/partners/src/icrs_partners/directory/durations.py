"""ISO 8601 durations as `accept_within` uses them: weeks, days, hours, minutes, seconds.

Years and months are refused: their length in seconds depends on the calendar. A stored
duration is rendered back in hours, minutes and seconds (`P3D` reads back as `PT72H`).
"""

from __future__ import annotations

import re

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d{1,4})W)?(?:(?P<days>\d{1,5})D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d{1,6})H)?(?:(?P<minutes>\d{1,8})M)?(?:(?P<seconds>\d{1,10})S)?)?$"
)
_UNIT_SECONDS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def parse_duration(text: str) -> int:
    """Seconds in an ISO 8601 duration such as `PT72H`, `P3D` or `PT90M`."""
    match = _DURATION.match(text.strip().upper())
    if match is None:
        if re.match(r"^P(\d+Y)?(\d+M)", text.strip().upper()):
            raise ValueError("years and months are not supported: give days or hours")
        raise ValueError("must be an ISO 8601 duration such as PT72H or P3D")
    return sum(int(v) * _UNIT_SECONDS[k] for k, v in match.groupdict().items() if v is not None)


def format_duration(seconds: int) -> str:
    """`PT72H` for 259200 seconds."""
    if seconds <= 0:
        return "PT0S"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}H" if hours else "",
        f"{minutes}M" if minutes else "",
        f"{secs}S" if secs else "",
    ]
    return "PT" + "".join(parts)
