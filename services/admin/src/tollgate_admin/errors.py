"""The errors admin answers with: one class per HTTP status, each naming the offending field.

    AdminError                 (base: status, message, param, type)
      ├── BadRequestError      400  bad input the schema could not catch
      ├── UnauthorizedError    401  no key, or an unknown / expired key
      ├── ForbiddenError       403  a key that may not do this
      ├── NotFoundError        404  the named key, team, user or model does not exist
      └── ConflictError        409  a concurrent write took the same unique value

Every one is rendered as LiteLLM's error body:
`{"error": {"message": ..., "type": ..., "param": ..., "code": "<status>"}}`.
"""

from __future__ import annotations

from typing import Any


class AdminError(Exception):
    status: int = 400
    error_type: str = "bad_request_error"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.param, self.error_type)


class BadRequestError(AdminError):
    status = 400


class UnauthorizedError(AdminError):
    status = 401
    error_type = "auth_error"


class ForbiddenError(AdminError):
    status = 403
    error_type = "auth_error"


class NotFoundError(AdminError):
    status = 404
    error_type = "not_found_error"


class ConflictError(AdminError):
    status = 409
    error_type = "conflict_error"


def error_body(status: int, message: str, param: str | None, error_type: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": str(status)}}
