"""Request and response bodies of the REST API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Stable machine-readable name, e.g. not_found, invalid_argument, rate_limited."
    )
    message: str = Field(description="What was wrong, for people.")
    details: Any = Field(
        None, description="Extra structured information (e.g. which fields failed validation)."
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


class Credentials(Strict):
    email: str = Field(max_length=320, description="Email address (case-insensitive).")
    password: str = Field(min_length=1, max_length=1024, description="Password.")


class RegisteredUser(BaseModel):
    user_id: str
    email: str
    is_admin: bool


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")
    expires_at: int = Field(description="Expiry as a Unix timestamp.")


class ApiKeyCreate(Strict):
    name: str = Field("", max_length=100, description="A label for the key (e.g. the service that uses it).")


class ApiKeyCreated(BaseModel):
    api_key_id: str
    api_key: str = Field(description="The key itself: shown only in this response, store it now.")
    name: str
    created_at: str


class ApiKeyInfo(BaseModel):
    api_key_id: str
    name: str
    created_at: str
    last_used_at: str | None
    revoked: bool


class CharacterCreated(BaseModel):
    character_id: str
    semantic_vector_id: str
    status: str = Field(description="ready or needs_more_refs.")
    status_reasons: list[str] = []
    reference_quality: list[dict[str, Any]] = []


class GenerateOptionsIn(Strict):
    video: bool = Field(False, description="Generate a video instead of an image.")
    refine_face: bool = Field(
        False,
        description="Run the face refiner even when identity retention already passes (below the refine "
        "threshold it runs anyway).",
    )
    providers: list[str] = Field(
        default_factory=list, max_length=5, description="Preferred providers, in order."
    )
    seed: int = Field(0, ge=0, le=2**62, description="Seed for reproducible renders (0: random).")
    aspect_ratio: str = Field("", max_length=10, pattern=r"^(\d{1,2}:\d{1,2})?$", description="e.g. 16:9.")
    video_duration_s: float = Field(0.0, ge=0, le=60, description="Video length (0: provider default).")
    dialogue: str = Field("", max_length=1000, description="Spoken line for video providers that support it.")
    watermark: bool = Field(False, description="Watermark the result.")


class GenerateIn(Strict):
    character_id: str = Field(min_length=1, max_length=100)
    prompt: str = Field(min_length=1, max_length=4000, description="What happens in the scene.")
    pose_image_url: str | None = Field(
        None,
        max_length=2048,
        description=(
            "Optional pose reference: a storage URI returned by POST /api/v1/uploads, or a public https URL "
            "(private, loopback and link-local addresses are refused)."
        ),
    )
    style_overrides: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list,
        max_length=20,
        description="Extra style or state instructions (e.g. 'worn leather armor').",
    )
    options: GenerateOptionsIn = Field(default_factory=GenerateOptionsIn)


class JobAccepted(BaseModel):
    job_id: str
    status: str
    created: bool = Field(description="False when the Idempotency-Key matched an earlier submission.")


class FeedbackIn(Strict):
    rating: Literal["up", "down"] = Field(description="Thumbs up or down.")
    comment: str = Field("", max_length=2000)
