"""The one exception the backend's services raise for a request they refuse.

Services decide the status and a message a person can act on ("TAN already used"); the app turns it into
a JSON body ``{"error": message}``. Messages never echo a key, ID, TAN or token back.
"""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def too_many(retry_after: float, what: str) -> ApiError:
    seconds = max(1, int(retry_after + 0.999))
    return ApiError(429, f"too many {what}; try again in {seconds} s", {"Retry-After": str(seconds)})
