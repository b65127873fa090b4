"""One photo uploaded on its own, for a lifecycle action to name (a field crew's resolve or
comment: `"photos": ["/files/<sha256>.jpg"]`). Stored content-addressed like grid reports'
photos, so an upload retried after a dropped connection stores nothing new."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile, status
from pydantic import BaseModel, Field

from services.ingest.api import Submitter
from services.ingest.photos import MAX_PHOTO_BYTES, MEDIA_TYPES, store_photo
from shared.errors import HubError
from shared.web import RuntimeDep

router = APIRouter(prefix="/api/v1", tags=["ingest"])

# The multipart body: the photo at its limit plus the part headers.
PHOTO_BODY_LIMIT = MAX_PHOTO_BYTES + 64 * 1024


class PhotoRead(BaseModel):
    """A stored photo: name it in an action's `photos`."""

    path: str = Field(description="/files/<sha256>.<jpg|png>, readable by anyone holding it")
    media_type: str
    size: int = Field(description="bytes")


@router.post(
    "/photos",
    status_code=status.HTTP_201_CREATED,
    responses={415: {"description": "Not a JPEG or PNG"}},
)
async def upload_photo(
    _principal: Submitter,
    runtime: RuntimeDep,
    response: Response,
    photo: Annotated[UploadFile, File(description="JPEG or PNG, ≤ 5 MiB")],
) -> PhotoRead:
    """Store one photo (the same bytes always get the same path) for a ticket action."""
    data = await photo.read(MAX_PHOTO_BYTES + 1)
    if len(data) > MAX_PHOTO_BYTES:
        raise HubError(f"a photo may have at most {MAX_PHOTO_BYTES} bytes", 413)
    name = await asyncio.to_thread(store_photo, runtime.settings.data_dir, data)
    path = f"/files/{name}"
    response.headers["Location"] = path
    return PhotoRead(path=path, media_type=MEDIA_TYPES[name.rsplit(".", 1)[1]], size=len(data))
