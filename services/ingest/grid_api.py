"""Grid workers' reports from a phone: multipart form fields plus up to five photos."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Response, UploadFile, status
from fastapi.responses import FileResponse
from pydantic import ValidationError

from services.ingest.api import Submitter, to_read
from services.ingest.intake import submit
from services.ingest.photos import MAX_PHOTO_BYTES, MAX_PHOTOS, MEDIA_TYPES, photo_path, store_photo
from services.ingest.schemas import EventCreate, EventRead, Location, Reporter
from shared.errors import HubError, NotFoundError
from shared.web import RuntimeDep

router = APIRouter(tags=["ingest"])

IMAGE_TYPES = sorted(set(MEDIA_TYPES.values()))
PHOTO_NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|png)$")
# The whole multipart body: every photo at its limit plus the form fields.
GRID_BODY_LIMIT = MAX_PHOTOS * MAX_PHOTO_BYTES + 256 * 1024


async def _read_limited(upload: UploadFile) -> bytes:
    data = await upload.read(MAX_PHOTO_BYTES + 1)
    if len(data) > MAX_PHOTO_BYTES:
        raise HubError(f"photo {upload.filename!r} is larger than {MAX_PHOTO_BYTES} bytes", 413)
    return data


@router.post(
    "/api/v1/grid-reports",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": EventRead, "description": "Already submitted: the original."}},
)
async def create_grid_report(
    principal: Submitter,
    runtime: RuntimeDep,
    response: Response,
    category: Annotated[str, Form(min_length=1, max_length=100)],
    lon: Annotated[float, Form(ge=-180, le=180, allow_inf_nan=False)],
    lat: Annotated[float, Form(ge=-90, le=90, allow_inf_nan=False)],
    description: Annotated[str, Form(max_length=4000)] = "",
    worker_id: Annotated[str | None, Form(max_length=100)] = None,
    source_ref: Annotated[str | None, Form(max_length=200)] = None,
    photos: Annotated[
        list[UploadFile] | None, File(description="JPEG or PNG, ≤ 5 MiB each")
    ] = None,
) -> EventRead:
    """A grid worker's report with the phone's position and up to five photos."""
    uploads = photos or []
    if len(uploads) > MAX_PHOTOS:
        raise HubError(f"at most {MAX_PHOTOS} photos per report", 422)
    root = runtime.settings.data_dir
    names = []
    for upload in uploads:
        data = await _read_limited(upload)
        names.append(await asyncio.to_thread(store_photo, root, data))
    try:
        payload = EventCreate(
            source="grid",
            source_ref=source_ref,
            category=category,
            description=description,
            location=Location(lon=lon, lat=lat),
            reporter=Reporter(account=worker_id or principal.subject),
            attachments=[f"/files/{n}" for n in names],
        )
    except ValidationError as exc:
        raise HubError(str(exc.errors()[0]["msg"]), 422) from exc
    event, created = await submit(runtime, payload, principal.subject)
    if not created:
        response.status_code = status.HTTP_200_OK
    return to_read(event)


@router.get(
    "/files/{name}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The photo",
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES},
        }
    },
)
async def get_file(name: Annotated[str, Path(max_length=80)], runtime: RuntimeDep) -> FileResponse:
    """A stored photo; its SHA-256 name is the capability (unguessable, immutable)."""
    if not PHOTO_NAME.match(name):
        raise NotFoundError("no such file")
    path = photo_path(runtime.settings.data_dir, name)
    if not path.is_file():
        raise NotFoundError("no such file")
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[name.rsplit(".", 1)[1]],
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
