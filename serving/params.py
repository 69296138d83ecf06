"""Typed validation of query and path parameters, and JSON errors.

Each parser takes the raw text (or None when the parameter is not given) and
returns the typed value, or raises :class:`ApiError` (rendered as
``{"error": {"code": 400, "message": ...}}``). The rules are exactly the ones the
OpenAPI document declares (``serving.openapi`` builds its parameter schemas
from the patterns, enums and bounds below), so a value the document allows is
accepted and a value it does not allow answers 400, never 200:

* a parameter given empty (``?venue=``) is an error, not "absent": leave it out
  to mean "no filter";
* values are taken as sent: no trimming, enums are exact (lower case), integers
  are ASCII digits with an optional sign;
* times are RFC 3339 date-times (``2026-11-25T14:30:00Z``, an offset, optional
  fraction), the JSON Schema ``date-time`` format;
* a parameter given twice, or one the endpoint does not take, is rejected too, so
  a typo never silently returns unfiltered data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from werkzeug.datastructures import MultiDict

from darkpool.contracts import ALERT_KINDS, MAX_SYMBOL_LENGTH, SEVERITIES

# case-insensitive, returned upper case; as long as the pipeline accepts (contracts.MAX_SYMBOL_LENGTH)
SYMBOL_PATTERN = r"[A-Za-z][A-Za-z0-9.\-/]{0," + str(MAX_SYMBOL_LENGTH - 1) + "}"
VENUE_PATTERN = r"[A-Za-z0-9]{1,10}"
SYMBOL_RE = re.compile(SYMBOL_PATTERN)
VENUE_RE = re.compile(VENUE_PATTERN)
INTEGER_RE = re.compile(r"[+-]?[0-9]+")
RFC3339_RE = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})[Tt](?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]+))?(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}))"
)
WINDOW_CHOICES = ("latest", "current")
MARKET_SORTS = ("dark_share", "hhi", "notional", "share_quantity", "venue_count", "symbol")
ORDERS = ("desc", "asc")
ALERT_KIND_CHOICES: tuple[str, ...] = ALERT_KINDS  # the contract's alert kinds (kind=)
SEVERITY_CHOICES: tuple[str, ...] = SEVERITIES  # the contract's severities, lowest first (min_severity=)
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 1000, 100
STEP_MIN_SECONDS, STEP_MAX_SECONDS = 1, 86_400  # the timeseries step (step=): one second to one day
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def anchored(pattern: str) -> str:
    """The JSON Schema (ECMA-262) form of a pattern matched whole by :func:`re.fullmatch`."""
    return f"^{pattern}$"


class ApiError(Exception):
    """An HTTP error with a JSON body: ``{"error": {"code": status, "message": message}}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, dict[str, object]]:
        return {"error": {"code": self.status, "message": self.message}}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def check_known(args: MultiDict[str, str], allowed: Iterable[str]) -> None:
    """Reject query parameters this endpoint does not take, and any parameter given more than once."""
    allowed = tuple(allowed)
    names = set(args)
    unknown = sorted(names - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no parameters"
        raise bad_request(f"unknown query parameter(s): {', '.join(unknown)} (this endpoint takes {takes})")
    repeated = sorted(name for name in names if len(args.getlist(name)) > 1)
    if repeated:
        raise bad_request(f"query parameter(s) given more than once: {', '.join(repeated)}")


def present(raw: str | None, name: str) -> bool:
    """False for a parameter not given; 400 for one given empty (``?name=``)."""
    if raw is None:
        return False
    if raw == "":
        raise bad_request(f"{name} is empty: give a value or leave the parameter out")
    return True


def symbol(raw: str | None, name: str = "symbol") -> str | None:
    """A ticker symbol (case-insensitive, returned upper case), or None when not given."""
    if not present(raw, name):
        return None
    if not SYMBOL_RE.fullmatch(raw):
        raise bad_request(f"{name} must be a ticker symbol (1-{MAX_SYMBOL_LENGTH} of A-Z 0-9 . - /, starting "
                          "with a letter), "
                          f"got {raw!r}")
    return raw.upper()


def path_symbol(raw: str) -> str:
    """The symbol of a URL path segment (required)."""
    if raw == "" or raw.isspace():
        raise bad_request("the symbol in the path is empty")
    value = symbol(raw)
    assert value is not None
    return value


def venue(raw: str | None) -> str | None:
    """A venue MPID (case-insensitive, returned upper case), or None when not given."""
    if not present(raw, "venue"):
        return None
    if not VENUE_RE.fullmatch(raw):
        raise bad_request(f"venue must be a venue MPID (1-10 of A-Z 0-9), got {raw!r}")
    return raw.upper()


def choice(raw: str | None, name: str, choices: tuple[str, ...], default: str) -> str:
    """Exactly one of ``choices``, ``default`` when not given."""
    if not present(raw, name):
        return default
    if raw not in choices:
        raise bad_request(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def optional_choice(raw: str | None, name: str, choices: tuple[str, ...]) -> str | None:
    """Exactly one of ``choices``, or None when not given (no filter)."""
    if not present(raw, name):
        return None
    if raw not in choices:
        raise bad_request(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def bounded_int(raw: str | None, name: str, low: int, high: int | None, default: int) -> int:
    """An integer within [low, high] (no upper bound when high is None), ``default`` when not given."""
    if not present(raw, name):
        return default
    if not INTEGER_RE.fullmatch(raw):
        raise bad_request(f"{name} must be an integer, got {raw!r}")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise bad_request(f"{name} must be {bounds}, got {value}")
    return value


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm; any year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def rfc3339_ms(text: str) -> int | None:
    """An RFC 3339 date-time as epoch ms (fraction truncated to ms), or None if ``text`` is not one.

    Pure arithmetic, so every year 0000-9999 and every offset works (no datetime range limits);
    a leap second (23:59:60 UTC, as JSON Schema's ``date-time`` allows it) counts as the next second."""
    m = RFC3339_RE.fullmatch(text)
    if m is None:
        return None
    year, month, day = int(m["y"]), int(m["mo"]), int(m["d"])
    hour, minute, second = int(m["h"]), int(m["mi"]), int(m["s"])
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS_IN_MONTH[month - 1] + (month == 2 and leap):
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    offset_min = 0
    if m["sign"]:
        oh, om = int(m["oh"]), int(m["om"])
        if oh > 23 or om > 59:
            return None
        offset_min = (oh * 60 + om) * (1 if m["sign"] == "+" else -1)
    if second == 60 and (hour * 60 + minute - offset_min) % 1440 != 23 * 60 + 59:
        return None  # a leap second is 23:59:60 UTC
    ms = int((m["frac"] or "0")[:3].ljust(3, "0"))
    seconds = _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60
    return seconds * 1000 + ms


def timestamp(raw: str | None, name: str) -> int | None:
    """An RFC 3339 date-time as epoch ms, or None when not given."""
    if not present(raw, name):
        return None
    value = rfc3339_ms(raw)
    if value is None:
        raise bad_request(f"{name} must be an RFC 3339 date-time such as 2026-11-25T14:30:00Z, got {raw!r}")
    return value
