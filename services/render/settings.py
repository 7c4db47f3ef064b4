"""Render service settings (env prefix IDLOCK_RENDER_)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from idlock.settings import GrpcServerSettings

KNOWN_PROVIDERS = ("gemini", "diffusers", "compositor")


class RenderSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_RENDER_")
    component: ClassVar[str] = "render"

    providers: list[str] = Field(
        default_factory=lambda: ["gemini", "diffusers", "compositor"],
        description=(
            "Provider fallback order (JSON list). Providers that are not configured (no API key, no model "
            "path) are skipped and the reason is reported in the result."
        ),
    )
    fallback_on_transient: bool = Field(
        True,
        description=(
            "Fall back to the next provider when one fails transiently (unavailable, timeout, provider quota) "
            "after its retries. Invalid input, permission and safety errors never fall back."
        ),
    )
    default_width: int = Field(
        768, ge=64, le=4096, description="Image width when the request gives none (px)."
    )
    default_height: int = Field(
        768, ge=64, le=4096, description="Image height when the request gives none (px)."
    )

    # --- Gemini image ("Nano-Banana") ---
    gemini_api_key: SecretStr = Field(
        SecretStr(""), description="Gemini API key. Empty: the gemini provider is unavailable (skipped)."
    )
    gemini_base_url: str = Field(
        "", description="Gemini API base URL (a fake server in tests). Empty: Google's endpoint."
    )
    gemini_api_version: str = Field("v1beta", description="Gemini API version path segment.")
    gemini_model: str = Field("gemini-2.5-flash-image", description="Gemini image model name.")
    timeout_s: float = Field(
        60.0, gt=0, le=600, description="Deadline of one provider call (seconds); past it: DEADLINE_EXCEEDED."
    )
    max_retries: int = Field(
        2,
        ge=0,
        le=5,
        description="Retries after the first attempt on 429/500/502/503/504 and connection errors.",
    )
    retry_status_codes: list[int] = Field(
        default_factory=lambda: [429, 500, 502, 503, 504],
        description="HTTP status codes retried with backoff (JSON list).",
    )
    backoff_base_s: float = Field(
        1.0, ge=0, description="First retry delay (seconds); doubles each retry, jittered between half and all of it."
    )
    backoff_max_s: float = Field(
        20.0, ge=0, description="Largest retry delay (seconds); a Retry-After asking for longer fails the call at once."
    )
    retry_on_timeout: bool = Field(
        False, description="Retry a call that hit its deadline (off: a timeout fails at once)."
    )

    # --- local diffusers ---
    diffusers_model_path: Path | None = Field(
        None,
        description=(
            "Folder of a diffusers pipeline (SD 1.5 / SDXL, save_pretrained layout). Empty: the diffusers "
            "provider is unavailable (skipped)."
        ),
    )
    diffusers_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Device for diffusers: auto picks CUDA (fp16) when present, else CPU (fp32)."
    )
    diffusers_steps: int = Field(30, ge=1, le=200, description="Denoising steps.")
    diffusers_guidance: float = Field(7.0, ge=0, le=30, description="Classifier-free guidance scale.")
    diffusers_default_size: int = Field(
        512, ge=32, le=2048, description="Image side when the request gives none (diffusers; 1024 for SDXL)."
    )

    # --- offline compositor ---
    compositor_enabled: bool = Field(True, description="Offer the offline compositor (development renderer).")

    # --- output ---
    watermark: bool = Field(
        True,
        description="Add the visible IDLock mark and the PNG text chunk unless a request says otherwise.",
    )
    cost_per_image_usd: dict[str, float] = Field(
        default_factory=lambda: {"gemini": 0.039, "diffusers": 0.0, "compositor": 0.0},
        description="Estimated cost of one image per provider (USD, JSON object); reported in every result.",
    )

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, v: list[str]) -> list[str]:
        out = [p.strip().lower() for p in v if p.strip()]
        unknown = [p for p in out if p not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(f"unknown render provider(s) {unknown}; known: {list(KNOWN_PROVIDERS)}")
        if not out:
            raise ValueError("IDLOCK_RENDER_PROVIDERS must name at least one provider")
        return out
