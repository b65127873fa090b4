"""Content-addressed photo storage under the data dir: same bytes, same name, stored once."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from shared.errors import HubError

MAX_PHOTO_BYTES = 5 * 1024 * 1024  # per photo; phones resize, 5 MiB leaves room for 12 MP JPEGs
MAX_PHOTOS = 5
# Magic bytes decide the type: the client's Content-Type and file name are not trusted.
SIGNATURES = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


def photo_kind(data: bytes) -> str:
    """`jpg` or `png` from the file's first bytes; 415 for anything else."""
    for magic, kind in SIGNATURES.items():
        if data.startswith(magic):
            return kind
    raise HubError("photos must be JPEG or PNG", 415)


def photo_path(root: Path, name: str) -> Path:
    """Where a stored photo named `<sha256>.<ext>` lives (fanned out by its first bytes)."""
    return root / "files" / name[:2] / name[2:4] / name


def store_photo(root: Path, data: bytes) -> str:
    """Store a photo (atomically, once) and return its name `<sha256>.<ext>`."""
    if len(data) > MAX_PHOTO_BYTES:
        raise HubError(f"a photo may have at most {MAX_PHOTO_BYTES} bytes", 413)
    name = f"{hashlib.sha256(data).hexdigest()}.{photo_kind(data)}"
    target = photo_path(root, name)
    if target.exists():
        return name
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, target)  # atomic: readers never see half a photo
    return name
