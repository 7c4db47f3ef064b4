"""Render service settings (env prefix IDLOCK_RENDER_)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from idlock.settings import ModelServiceSettings

KNOWN_PROVIDERS = ("gemini", "diffusers", "compositor", "veo")
#: providers that render videos
VIDEO_PROVIDERS = ("veo", "compositor")


class RenderSettings(ModelServiceSettings):
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
        1.0,
        ge=0,
        description="First retry delay (seconds); doubles each retry, jittered between half and all of it.",
    )
    backoff_max_s: float = Field(
        20.0,
        ge=0,
        description="Largest retry delay (seconds); a Retry-After asking for longer fails the call at once.",
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
    lora_cache_sweep_s: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="How often the LoRA files cached on this replica's disk are checked against object storage "
        "(and at start): a file whose stored LoRA is gone (its character erased) is deleted and its adapter "
        "unloaded.",
    )
    held_render_max_age_s: float = Field(
        3600.0,
        gt=0,
        le=86400,
        description="How long an image rendered but not saved (object storage failed) is kept in memory for the "
        "job's retry, which saves it instead of paying for another render (seconds; at least the orchestrator's "
        "job deadline). Past it, an erased character's render does not stay either.",
    )

    # --- Veo video (google-genai, Vertex protocol: predictLongRunning + fetchPredictOperation) ---
    video_providers: list[str] = Field(
        default_factory=lambda: ["veo", "compositor"],
        description="Video providers in fallback order (veo, compositor); unavailable ones are skipped.",
    )
    veo_model: str = Field("veo-3.1-generate-preview", description="Veo model name.")
    veo_api_key: SecretStr = Field(
        SecretStr(""),
        description="API key for Veo. Empty: IDLOCK_RENDER_GEMINI_API_KEY is used; both empty: veo unavailable.",
    )
    veo_base_url: str = Field(
        "", description="Veo API base URL override (tests point it at a fake). Empty: gemini_base_url."
    )
    veo_api_version: str = Field("v1beta1", description="API version path segment for Veo calls.")
    veo_project: str = Field("", description="Google Cloud project (empty: API-key express mode).")
    veo_location: str = Field("", description="Google Cloud location, with veo_project.")
    veo_poll_interval_s: float = Field(10.0, gt=0, le=120, description="Seconds between operation polls.")
    veo_timeout_s: float = Field(
        600.0, gt=0, description="Give up on one video operation after this long (polling included)."
    )
    veo_generate_audio: bool = Field(True, description="Ask Veo for audio (dialogue is spoken when given).")
    video_width: int = Field(320, ge=16, le=1920, description="Offline clip width (compositor).")
    video_height: int = Field(240, ge=16, le=1080, description="Offline clip height (compositor).")
    video_fps: int = Field(8, ge=1, le=60, description="Offline clip frame rate (compositor).")
    video_duration_s: float = Field(
        3.0, gt=0, le=60, description="Default clip length when a request names none."
    )
    cost_per_video_second_usd: dict[str, float] = Field(
        default_factory=lambda: {"veo": 0.40, "compositor": 0.0},
        description="Estimated cost of one second of video per provider (USD, JSON object).",
    )

    # --- offline compositor ---
    compositor_enabled: bool = Field(True, description="Offer the offline compositor (development renderer).")

    # --- output ---
    watermark: bool = Field(
        True,
        description="Add the visible IDLock mark and the PNG text chunk unless a request says otherwise.",
    )
    watermark_video_frames: bool = Field(
        False,
        description="Stamp the visible mark on every frame of a clip too (re-encodes it as WebM/VP8: OpenCV has no "
        "H.264 encoder), as a request asking for a watermark does. The poster follows IDLOCK_RENDER_WATERMARK; "
        "every clip carries the metadata manifest.",
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

    @field_validator("video_providers")
    @classmethod
    def _known_video_providers(cls, v: list[str]) -> list[str]:
        out = [p.strip().lower() for p in v if p.strip()]
        unknown = [p for p in out if p not in VIDEO_PROVIDERS]
        if unknown:
            raise ValueError(f"unknown video provider(s) {unknown}; known: {list(VIDEO_PROVIDERS)}")
        return out
