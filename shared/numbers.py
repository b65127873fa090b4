"""Finite numbers in request models.

Python's JSON parser (and so FastAPI's) accepts the non-standard tokens `NaN`, `Infinity` and
`-Infinity`. A float field refuses them with `allow_inf_nan=False`, but the 422 then echoes the
refused input, and a non-finite float cannot be written as JSON: the refusal itself would fail.
`REFUSE_AS_TEXT` hands such a value on as text, so it is refused as "not a finite number" with an
input JSON can carry. Put it last, after the field's bounds, so they stay in the JSON schema:

    Annotated[float, Field(gt=0, le=10, allow_inf_nan=False), REFUSE_AS_TEXT]
"""

from __future__ import annotations

import math

from pydantic import BeforeValidator


def as_text_if_not_finite(value: object) -> object:
    """NaN and ±Infinity as their text (refused just the same), anything else unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


REFUSE_AS_TEXT = BeforeValidator(as_text_if_not_finite)
