"""Domain errors of the API layer; the app turns each into a problem-details response."""

from __future__ import annotations

from collections.abc import Sequence


class ApiError(Exception):
    """A request that cannot be served as asked. ``field`` is the location at fault, e.g. ``body.into``."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | Sequence[str | int] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if field is None or isinstance(field, str):
            self.field = field
        else:
            self.field = ".".join(str(p) for p in field)


class NotFound(ApiError):
    status = 404
    title = "Not found"


class Conflict(ApiError):
    status = 409
    title = "Conflict"


class InvalidInput(ApiError):
    status = 422
    title = "Invalid input"


class TooManyRequests(ApiError):
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
