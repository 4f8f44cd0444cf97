"""Errors as JSON: ``{"error": CODE, "message": TEXT}`` with the right status, never a 500 for input.

Handlers raise :class:`ApiError`; everything else that escapes a view becomes a logged 500 whose
body says only that something broke (the log line, with its trace id, says what).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error response. ``code`` is a stable snake_case identifier clients can branch on."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


def bad_request(code: str, message: str, **details: Any) -> ApiError:
    return ApiError(400, code, message, **details)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what}_not_found", f"{what.replace('_', ' ')} not found")


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "body"


def validation_error(exc: ValidationError) -> ApiError:
    """The first problem in the message (what a human reads), all of them in ``fields``."""
    problems = [
        {"field": _location(err["loc"]), "problem": err["msg"].removeprefix("Value error, ")}
        for err in exc.errors(include_url=False)
    ]
    first = problems[0]
    return ApiError(
        400, "invalid_request", f"{first['field']}: {first['problem']}", fields=problems
    )


def _snake(name: str) -> str:
    return name.lower().replace(" ", "_").replace("'", "")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        response = jsonify(exc.body())
        retry_after = exc.details.get("retry_after_seconds")
        if exc.status in (429, 503) and isinstance(retry_after, int) and retry_after > 0:
            response.headers["Retry-After"] = str(retry_after)
        return response, exc.status

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError):
        error = validation_error(exc)
        return jsonify(error.body()), error.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        response = jsonify({"error": _snake(exc.name), "message": exc.description})
        response.status_code = exc.code or 500
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        span = trace.get_current_span()
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        log.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return jsonify({"error": "internal_error", "message": "internal error; see the service log"}), 500
