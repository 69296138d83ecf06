"""Typed validation of query parameters and JSON errors.

Each parser takes the raw text (or None) and returns the typed value or raises
:class:`ApiError` (rendered as ``{"error": {"code": 400, "message": ...}}``).
Unknown query parameters are rejected too, so a typo never silently returns
unfiltered data. An empty value (``?symbol=``) means the parameter is absent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from darkpool.contracts import parse_event_time

SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9.\-/]{0,15}$")
VENUE_RE = re.compile(r"^[A-Z0-9]{1,10}$")
WINDOW_CHOICES = ("latest", "current")
MARKET_SORTS = ("dark_share", "hhi", "notional", "share_quantity", "venue_count", "symbol")
ORDERS = ("desc", "asc")
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 1000, 100


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


def check_known(args: Mapping[str, str], allowed: Iterable[str]) -> None:
    """Reject query parameters this endpoint does not take."""
    allowed = tuple(allowed)
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no parameters"
        raise bad_request(f"unknown query parameter(s): {', '.join(unknown)} (this endpoint takes {takes})")


def absent(raw: str | None) -> bool:
    """True for a parameter not given or given empty."""
    return raw is None or not raw.strip()


def symbol(raw: str | None, name: str = "symbol") -> str | None:
    """A ticker symbol (case-insensitive, returned upper case), or None when absent."""
    if absent(raw):
        return None
    value = raw.strip().upper()
    if not SYMBOL_RE.match(value):
        raise bad_request(f"{name} must be a ticker symbol (1-16 of A-Z 0-9 . - /, starting with a letter), "
                          f"got {raw!r}")
    return value


def path_symbol(raw: str) -> str:
    """The symbol of a URL path segment (required)."""
    value = symbol(raw)
    if value is None:
        raise bad_request("the symbol in the path is empty")
    return value


def venue(raw: str | None) -> str | None:
    """A venue MPID (case-insensitive, returned upper case), or None when absent."""
    if absent(raw):
        return None
    value = raw.strip().upper()
    if not VENUE_RE.match(value):
        raise bad_request(f"venue must be a venue MPID (1-10 of A-Z 0-9), got {raw!r}")
    return value


def choice(raw: str | None, name: str, choices: tuple[str, ...], default: str) -> str:
    """One of ``choices`` (case-insensitive), ``default`` when absent."""
    if absent(raw):
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise bad_request(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def bounded_int(raw: str | None, name: str, low: int, high: int | None, default: int) -> int:
    """An integer within [low, high] (no upper bound when high is None), ``default`` when absent."""
    if absent(raw):
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise bad_request(f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise bad_request(f"{name} must be {bounds}, got {value}")
    return value


def timestamp(raw: str | None, name: str) -> int | None:
    """An ISO-8601 time (``Z`` or offset; naive means UTC) as epoch ms, or None when absent."""
    if absent(raw):
        return None
    try:
        return parse_event_time(raw.strip())
    except ValueError:
        raise bad_request(f"{name} must be an ISO-8601 time such as 2026-11-25T14:30:00Z, got {raw!r}") from None
