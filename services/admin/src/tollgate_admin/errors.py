"""The errors admin answers with: one class per HTTP status, each naming the offending field.

    AdminError                 (base: status, message, param)
      ├── BadRequestError      400  bad input the schema could not catch
      ├── UnauthorizedError    401  no key, or an unknown / expired key
      ├── ForbiddenError       403  a key that may not do this
      ├── NotFoundError        404  the named key, team, user or model does not exist
      └── ConflictError        409  a concurrent write took the same unique value

Every one is rendered as the OpenAI/LiteLLM error body every service answers with
(`tollgate_shared.errors.error_body`: the `type` follows the status):
`{"error": {"message": ..., "type": ..., "param": ..., "code": "<status>"}}`.
"""

from __future__ import annotations

from typing import Any

from tollgate_shared.errors import error_body


class AdminError(Exception):
    status: int = 400

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.status, param=self.param)


class BadRequestError(AdminError):
    status = 400


class UnauthorizedError(AdminError):
    status = 401


class ForbiddenError(AdminError):
    status = 403


class NotFoundError(AdminError):
    status = 404


class ConflictError(AdminError):
    status = 409
