"""Virtual keys: LiteLLM's /key/* endpoints."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter

from tollgate_admin import schemas
from tollgate_admin.errors import ForbiddenError
from tollgate_admin.key_material import token_of
from tollgate_admin.routes.deps import ERRORS, ActorDep, CallerDep, ServiceDep
from tollgate_shared import names

Id = Annotated[str | None, QueryParameter(pattern=names.ID_PATTERN, required=False)]


class KeyController(Controller):
    path = "/key"
    tags = ["key management"]

    @post("/generate", operation_id="key_generate", responses=ERRORS, status_code=200)
    async def generate(
        self, data: JSONBody[schemas.GenerateKeyRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.GenerateKeyResponse:
        """Create a virtual key; the plaintext `key` is returned only here, once.

        `duration` ("30s", "1h", "7d") sets `expires`; `metadata.logging` routes the key's
        logs to its own callbacks. Only the SHA-256 hash (`token_id`) is stored.
        """
        return schemas.GenerateKeyResponse.model_validate(await service.generate_key(data, actor))

    @post("/update", operation_id="key_update", responses=ERRORS, status_code=200)
    async def update(
        self, data: JSONBody[schemas.UpdateKeyRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.UpdateKeyResponse:
        """Change the given fields of a key (named by plaintext or hash)."""
        return schemas.UpdateKeyResponse.model_validate(await service.update_key(data, actor))

    @post("/delete", operation_id="key_delete", responses=ERRORS, status_code=200)
    async def delete(
        self, data: JSONBody[schemas.KeyRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.KeyDeleteResponse:
        """Delete keys by `keys` (plaintext or hashes) or by `key_aliases`; all or nothing."""
        return schemas.KeyDeleteResponse.model_validate(await service.delete_keys(data, actor))

    @post("/regenerate", operation_id="key_regenerate", responses=ERRORS, status_code=200)
    async def regenerate(
        self, data: JSONBody[schemas.RegenerateKeyRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.GenerateKeyResponse:
        """Rotate a key (named in the body): a new secret, the same settings; the old one stops."""
        return schemas.GenerateKeyResponse.model_validate(
            await service.regenerate_key(None, data, actor)
        )

    @post(
        "/{key:str}/regenerate",
        operation_id="key_regenerate_by_path",
        responses=ERRORS,
        status_code=200,
    )
    async def regenerate_by_path(
        self,
        key: Annotated[
            str, PathParameter(description="the key (sk-...) or its hash", max_length=512)
        ],
        service: ServiceDep,
        actor: ActorDep,
        data: JSONBody[schemas.RegenerateKeyRequest | None] = None,
    ) -> schemas.GenerateKeyResponse:
        """Rotate the key named in the path; an optional body updates its settings too."""
        return schemas.GenerateKeyResponse.model_validate(
            await service.regenerate_key(key, data, actor)
        )

    @post("/block", operation_id="key_block", responses=ERRORS, status_code=200)
    async def block(
        self, data: JSONBody[schemas.BlockKeyRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.KeyInfo:
        """Block a key: it stays known but every request with it is refused."""
        return schemas.KeyInfo.model_validate(await service.set_key_blocked(data, True, actor))

    @post("/unblock", operation_id="key_unblock", responses=ERRORS, status_code=200)
    async def unblock(
        self, data: JSONBody[schemas.BlockKeyRequest], service: ServiceDep, actor: ActorDep
    ) -> schemas.KeyInfo:
        """Unblock a key."""
        return schemas.KeyInfo.model_validate(await service.set_key_blocked(data, False, actor))

    @get("/info", operation_id="key_info", responses=ERRORS)
    async def info(
        self,
        service: ServiceDep,
        caller: CallerDep,
        key: Annotated[
            str | None,
            QueryParameter(
                required=False,
                max_length=512,
                description="the key or its hash; omitted: the calling key itself",
            ),
        ] = None,
    ) -> schemas.KeyInfoResponse:
        """A key's settings. The master key may read any key; a virtual key only itself."""
        if not caller.is_master and key is not None and token_of(key) != caller.token:
            raise ForbiddenError("a virtual key may only read its own /key/info", "key")
        return schemas.KeyInfoResponse.model_validate(
            await service.key_info(key, None if caller.is_master else caller.token)
        )

    @get("/list", operation_id="key_list", responses=ERRORS)
    async def list_keys(
        self,
        service: ServiceDep,
        admin: CallerDep,
        page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        size: Annotated[int, QueryParameter(ge=1, le=100)] = 10,
        user_id: Id = None,
        team_id: Id = None,
        key_alias: Annotated[str | None, QueryParameter(required=False, max_length=256)] = None,
        key_hash: Annotated[
            str | None, QueryParameter(required=False, pattern=r"^[0-9a-f]{64}$")
        ] = None,
        return_full_object: Annotated[bool, QueryParameter()] = False,
    ) -> schemas.KeyListResponse:
        """Keys, newest first: their hashes, or full records with `return_full_object=true`."""
        return schemas.KeyListResponse.model_validate(
            await service.list_keys(
                page=page,
                size=size,
                user_id=user_id,
                team_id=team_id,
                key_alias=key_alias,
                key_hash=key_hash,
                return_full_object=return_full_object,
            )
        )
