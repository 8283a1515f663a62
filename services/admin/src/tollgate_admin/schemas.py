"""Request and response bodies of the management API, in LiteLLM's shapes (typed for OpenAPI).

Requests ignore fields Tollgate does not implement (LiteLLM has many), so existing
scripts keep working; every field it does read is validated here or in the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from tollgate_admin import validation
from tollgate_admin.errors import BadRequestError
from tollgate_shared import names


def _storable_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text") from None
    return value


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    try:
        validation.check_storable(value, "value")
    except BadRequestError as exc:
        raise ValueError(exc.message.removeprefix("value")) from None
    return value


Text = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_storable_text)]
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=256), AfterValidator(_storable_text)
]
Id = Annotated[str, StringConstraints(pattern=names.ID_PATTERN)]
Json = Annotated[dict[str, Any], AfterValidator(_storable_json)]
Limit = Annotated[int, Field(ge=0, le=10**15)]
Budget = Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)]
Models = Annotated[list[Name], Field(max_length=1000)]
CallbackType = Literal["success", "failure", "success_and_failure"]
UserRole = Literal["proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer"]


class _Request(BaseModel):
    # LiteLLM accepts many more fields; unknown ones are ignored, not refused.
    model_config = ConfigDict(extra="ignore")


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- errors -----------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    message: str
    type: str = Field(
        description="invalid_request_error, auth_error, not_found_error, conflict_error, ..."
    )
    param: str | None = Field(None, description="the offending field or header, when known")
    code: str = Field(description="the HTTP status, as a string")


class ErrorResponse(BaseModel):
    """Every error answer (LiteLLM's shape)."""

    error: ErrorDetail


# --- keys ------------------------------------------------------------------------------
class KeyFields(_Request):
    """What a key carries; shared by generate, update and regenerate."""

    key_alias: Name | None = Field(None, description="unique, human-friendly name of the key")
    duration: Text | None = Field(
        None, description="lifetime: '30s', '1h', '7d', '1mo'; on update '-1' removes expiry"
    )
    models: Models | None = Field(None, description="model names the key may call; empty = all")
    max_budget: Budget | None = Field(None, description="USD the key may spend")
    budget_duration: Text | None = Field(None, description="budget reset period, e.g. '30d'")
    user_id: Id | None = None
    team_id: Id | None = None
    metadata: Json | None = Field(
        None,
        description="free-form; `logging`: list of {callback_name, callback_type, callback_vars}"
        " routes this key's logs",
    )
    tpm_limit: Limit | None = None
    rpm_limit: Limit | None = None
    max_parallel_requests: Limit | None = None
    blocked: bool | None = None

    @field_validator("metadata")
    @classmethod
    def _logging_shape(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and "logging" in value:
            LoggingList.model_validate({"logging": value["logging"]})
        return value


class CallbackSpec(_Request):
    callback_name: Name
    callback_type: CallbackType = "success_and_failure"
    callback_vars: dict[Name, Any] = Field(default_factory=dict)

    @field_validator("callback_vars")
    @classmethod
    def _scalar_vars(cls, value: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(v, dict | list):
                raise ValueError(f"callback_vars.{k} must be a string, number or boolean")
            out[k] = _storable_text(v) if isinstance(v, str) else v
        return out


class LoggingList(_Request):
    logging: list[CallbackSpec]


class GenerateKeyRequest(KeyFields):
    """POST /key/generate."""

    key: Text | None = Field(None, description="set the key yourself (must start with 'sk-')")


class UpdateKeyRequest(KeyFields):
    """POST /key/update: only the fields given are changed."""

    key: Text = Field(description="the key (sk-...) or its hash")


class RegenerateKeyRequest(KeyFields):
    """POST /key/regenerate (or /key/{key}/regenerate): a new secret, same key record."""

    key: Text | None = Field(None, description="the key (sk-...) or its hash")
    new_key: Text | None = Field(None, description="the new key value (must start with 'sk-')")


class KeyRequest(_Request):
    """POST /key/delete: by `keys` (plaintext or hashes) or by `key_aliases`."""

    keys: list[Text] | None = Field(None, max_length=1000)
    key_aliases: list[Text] | None = Field(None, max_length=1000)

    @model_validator(mode="after")
    def _one_given(self) -> KeyRequest:
        if not self.keys and not self.key_aliases:
            raise ValueError("at least one of 'keys' or 'key_aliases' must be provided")
        return self


class BlockKeyRequest(_Request):
    """POST /key/block and /key/unblock."""

    key: Text = Field(description="the key (sk-...) or its hash")


class KeyInfo(_Response):
    """A key as stored (LiteLLM_VerificationToken); never the plaintext."""

    token: str = Field(description="SHA-256 hex of the key")
    key_name: str | None = None
    key_alias: str | None = None
    spend: float = Field(0.0, description="spend in the current budget period")
    max_budget: float | None = None
    expires: datetime | None = None
    models: list[str] = Field(default_factory=list)
    user_id: str | None = None
    team_id: str | None = None
    max_parallel_requests: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    budget_duration: str | None = None
    budget_reset_at: datetime | None = Field(None, description="when the budget period ends")
    blocked: bool = False
    created_by: str | None = None
    updated_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class GenerateKeyResponse(KeyInfo):
    """The new key, shown once: `key` is the plaintext, `token_id`/`token` its hash."""

    key: str
    token_id: str
    duration: str | None = None


class KeyInfoResponse(_Response):
    key: str
    info: KeyInfo


class KeyListResponse(_Response):
    keys: list[str | KeyInfo] = Field(description="hashes, or full records with return_full_object")
    total_count: int
    current_page: int
    total_pages: int


class KeyDeleteResponse(_Response):
    deleted_keys: list[str]


class UpdateKeyResponse(KeyInfo):
    key: str


# --- teams ------------------------------------------------------------------------------
class Member(_Request):
    role: Literal["admin", "user"] = Field(
        description="'admin' manages the team, 'user' is a member"
    )
    user_id: Id | None = None
    user_email: Text | None = None

    @model_validator(mode="after")
    def _who(self) -> Member:
        if self.user_id is None and self.user_email is None:
            raise ValueError("either user_id or user_email must be provided")
        return self


class TeamFields(_Request):
    team_alias: Name | None = None
    metadata: Json | None = None
    tpm_limit: Limit | None = None
    rpm_limit: Limit | None = None
    max_budget: Budget | None = None
    budget_duration: Text | None = None
    models: Models | None = None
    blocked: bool | None = None


class NewTeamRequest(TeamFields):
    """POST /team/new."""

    team_id: Id | None = Field(None, description="generated when not given")
    members_with_roles: list[Member] = Field(default_factory=list, max_length=1000)


class UpdateTeamRequest(TeamFields):
    """POST /team/update: only the fields given are changed."""

    team_id: Id


class DeleteTeamRequest(_Request):
    team_ids: list[Id] = Field(min_length=1, max_length=1000)


class TeamMemberAddRequest(_Request):
    team_id: Id
    member: Member | list[Member]
    max_budget_in_team: Budget | None = None


class TeamMemberDeleteRequest(_Request):
    team_id: Id
    user_id: Id | None = None
    user_email: Text | None = None

    @model_validator(mode="after")
    def _who(self) -> TeamMemberDeleteRequest:
        if self.user_id is None and self.user_email is None:
            raise ValueError("either user_id or user_email must be provided")
        return self


class AddTeamCallback(CallbackSpec):
    """POST /team/{team_id}/callback."""


class MemberInfo(_Response):
    role: str
    user_id: str | None = None
    user_email: str | None = None


class TeamInfo(_Response):
    """A team as stored (LiteLLM_TeamTable)."""

    team_id: str
    team_alias: str | None = None
    members_with_roles: list[MemberInfo] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: datetime | None = Field(None, description="when the budget period ends")
    models: list[str] = Field(default_factory=list)
    blocked: bool = False
    spend: float = 0.0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class TeamMembership(_Response):
    team_id: str
    user_id: str
    spend: float = 0.0
    budget_id: str | None = None


class TeamInfoResponse(_Response):
    team_id: str
    team_info: TeamInfo
    keys: list[KeyInfo]
    team_memberships: list[TeamMembership]


class TeamUpdateResponse(_Response):
    team_id: str
    data: TeamInfo


class TeamDeleteResponse(_Response):
    deleted_teams: list[str]


class TeamCallbackData(_Response):
    team_id: str
    success_callbacks: list[str]
    failure_callbacks: list[str]
    callback_vars: dict[str, Any] = Field(default_factory=dict)
    callbacks: list[dict[str, Any]] = Field(
        default_factory=list, description="each callback with its own (masked) variables"
    )


class TeamCallbackResponse(_Response):
    status: str
    data: TeamCallbackData


class TeamCallbackAddResponse(_Response):
    status: str
    data: TeamInfo


class DisableLoggingData(_Response):
    team_id: str
    success_callbacks: list[str]
    failure_callbacks: list[str]


class DisableLoggingResponse(_Response):
    status: str
    message: str
    data: DisableLoggingData


# --- users ------------------------------------------------------------------------------
class UserFields(_Request):
    user_email: Text | None = None
    user_alias: Name | None = None
    user_role: UserRole | None = None
    models: Models | None = None
    max_budget: Budget | None = None
    budget_duration: Text | None = None
    tpm_limit: Limit | None = None
    rpm_limit: Limit | None = None
    metadata: Json | None = None


class NewUserRequest(UserFields):
    """POST /user/new; like LiteLLM it also creates a key for the user unless told not to."""

    user_id: Id | None = Field(None, description="generated when not given")
    teams: list[Id] | None = Field(None, max_length=1000)
    auto_create_key: bool = True
    key_alias: Name | None = None
    duration: Text | None = None


class UpdateUserRequest(UserFields):
    """POST /user/update: by user_id (or user_email); only the fields given are changed."""

    user_id: Id | None = None

    @model_validator(mode="after")
    def _who(self) -> UpdateUserRequest:
        if self.user_id is None and self.user_email is None:
            raise ValueError("either user_id or user_email must be provided")
        return self


class DeleteUserRequest(_Request):
    user_ids: list[Id] = Field(min_length=1, max_length=1000)


class UserInfo(_Response):
    """A user as stored (LiteLLM_UserTable)."""

    user_id: str
    user_email: str | None = None
    user_alias: str | None = None
    user_role: str | None = None
    models: list[str] = Field(default_factory=list)
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: datetime | None = Field(None, description="when the budget period ends")
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    teams: list[str] = Field(default_factory=list)
    spend: float = 0.0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class NewUserResponse(_Response):
    """The user, and the key created for it (shown once) when `auto_create_key`."""

    user_id: str
    user_email: str | None = None
    user_alias: str | None = None
    user_role: str | None = None
    teams: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    max_budget: float | None = None
    budget_duration: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    key: str | None = None
    token_id: str | None = None
    key_name: str | None = None
    key_alias: str | None = None
    expires: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class UserUpdateResponse(_Response):
    user_id: str
    data: UserInfo


class UserListResponse(_Response):
    """GET /user/list (LiteLLM's paginated shape)."""

    users: list[UserInfo]
    total: int
    page: int
    page_size: int
    total_pages: int


class UserInfoResponse(_Response):
    user_id: str
    user_info: UserInfo
    keys: list[KeyInfo]
    teams: list[TeamInfo]


# --- models -----------------------------------------------------------------------------
class LitellmParamsIn(_Request):
    """A deployment's `litellm_params`; `os.environ/NAME` values stay references."""

    model_config = ConfigDict(extra="allow")

    model: Name = Field(description="provider/model, e.g. 'openai/gpt-4o'")


class ModelInfoIn(_Request):
    model_config = ConfigDict(extra="allow")

    id: Id | None = Field(None, description="the deployment id; generated when not given")


class NewModelRequest(_Request):
    """POST /model/new: a `model_list` entry."""

    model_name: Name
    litellm_params: LitellmParamsIn
    model_info: ModelInfoIn | None = None


class ModelInfoRef(_Request):
    model_config = ConfigDict(extra="allow")

    id: Id


class UpdateModelRequest(_Request):
    """POST /model/update: `model_info.id` names the deployment; given params are merged."""

    model_name: Name | None = None
    litellm_params: dict[Name, Any] | None = None
    model_info: ModelInfoRef


class DeleteModelRequest(_Request):
    id: Id


class ModelEntry(_Response):
    model_name: str
    litellm_params: dict[str, Any]
    model_info: dict[str, Any]
    model_id: str | None = None
    created_at: datetime | None = None


class ModelInfoResponse(_Response):
    data: list[ModelEntry]


class ModelDeleteResponse(_Response):
    message: str
