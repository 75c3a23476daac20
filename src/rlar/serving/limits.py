"""What the web viewer accepts, as one validated options model (errors name the offending key)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rlar.errors import config_error_from


class ServerLimits(BaseModel):
    """Limits of ``rlar serve``. They bound memory per request so that one upload cannot take the server down."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="largest accepted request body (bytes)")
    max_pixels: int = Field(25_000_000, ge=1, description="largest image (all frames) by its header, before decoding")
    max_results: int = Field(32, ge=1, description="results kept in memory for the JSON/HTML downloads")


def validate_limits(**raw: object) -> ServerLimits:
    """:class:`ServerLimits` from keyword values; ConfigError("serve.<field>", reason) on a bad value."""
    try:
        return ServerLimits(**raw)  # type: ignore[arg-type]
    except ValidationError as err:
        raise config_error_from(err, "serve", model=ServerLimits) from None
