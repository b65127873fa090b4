"""The denominator of the HTTP intake benchmark: FastAPI validating the same model, nothing else."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, status

from services.ingest.schemas import EventCreate

app = FastAPI()


@app.post("/api/v1/events", status_code=status.HTTP_201_CREATED)
async def create_event(payload: EventCreate) -> dict[str, str]:
    """Validate and answer 201, as cityhub does, minus geotagging, storage and publishing."""
    return {"id": str(uuid.uuid4()), "category": payload.category}
