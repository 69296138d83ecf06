"""The one exception type the CLI turns into a clear message (no stack trace)."""

from __future__ import annotations


class DarkpoolError(Exception):
    """A user-facing failure: what went wrong, and how to fix it.

    ``hint`` is printed on its own line after the message, e.g.
    "free the port or set DARKPOOL_KAFKA_PORT".
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n  hint: {self.hint}" if self.hint else text
