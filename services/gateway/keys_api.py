"""`/api/v1/keys`: integrators' API keys, managed by admins (`cityhub keys` over HTTP)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.identity import create_api_key, get_api_key, list_api_keys, revoke_api_key
from services.gateway.users_api import Name
from shared.auth import Principal
from shared.db.models import ApiKey
from shared.web import RuntimeDep, SessionDep, forget_api_key, require_json, require_roles

router = APIRouter(prefix="/api/v1", tags=["keys"], dependencies=[Depends(require_json)])

Admin = Annotated[Principal, Depends(require_roles("admin"))]
KeyNamePath = Annotated[str, Path(min_length=1, max_length=100)]


class KeyRead(BaseModel):
    """An API key as admins see it: never the key itself, which only its creation shows."""

    name: str
    role: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None = Field(description="Refused from then on; null while active")
    mqtt: bool = Field(description="It can log in to Mosquitto (keys made before MQTT cannot)")


class KeyCreate(BaseModel):
    """A new key's name: the integrator's name, which its events and sensors carry."""

    model_config = ConfigDict(extra="forbid")

    name: Name


class KeyCreated(KeyRead):
    """A new key, with the key in clear: store it now, it is never shown again."""

    key: str


def _read(key: ApiKey) -> KeyRead:
    return KeyRead(
        name=key.name,
        role=key.role,
        scope=key.scope,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
        mqtt=key.mqtt_password_hash is not None,
    )


@router.get("/keys")
async def list_keys(_admin: Admin, session: SessionDep) -> list[KeyRead]:
    """Every API key by name, revoked ones included (admins)."""
    return [_read(key) for key in await list_api_keys(session)]


@router.post("/keys", status_code=201)
async def add_key(body: KeyCreate, _admin: Admin, session: SessionDep) -> KeyCreated:
    """Create an integrator's key (admins); the answer is the only time it is shown. 409 when
    a key or a user has that name (a revoked key keeps its name: its events still carry it)."""
    key = await create_api_key(session, body.name)
    stored = await get_api_key(session, body.name)
    return KeyCreated(**_read(stored).model_dump(), key=key)


@router.delete("/keys/{name}", status_code=204)
async def delete_key(name: KeyNamePath, _admin: Admin, runtime: RuntimeDep) -> Response:
    """Revoke a key (admins): HTTP and the embedded MQTT broker refuse it at once in this
    process, other processes within a second; Mosquitto once `cityhub mqtt export-auth` has
    run again. The row stays, revoked, so the name keeps naming that integrator's events."""
    # Its own transaction: the cached answers about the key are dropped after the commit.
    async with runtime.sessions() as session, session.begin():
        key = await get_api_key(session, name)
        await revoke_api_key(session, name)
    forget_api_key(runtime, key.name, key.key_hash)
    return Response(status_code=204)
