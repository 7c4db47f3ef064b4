"""Settings of the refiner service (env prefix IDLOCK_REFINER_)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from idlock.settings import ModelServiceSettings

Strategy = Literal["reference-warp", "render"]


class RefinerSettings(ModelServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_REFINER_")
    component: ClassVar[str] = "refiner"

    strategy_order: list[Strategy] = Field(
        default_factory=lambda: ["reference-warp", "render"],
        description=(
            "Order of the strategies tried by strategy AUTO (JSON list of 'reference-warp', 'render'); attempts "
            "take one strategy after the other and stop at the first that passes."
        ),
    )
    max_attempts: int = Field(2, ge=1, le=8, description="Attempts when a request gives none (seed: 2).")
    max_attempts_limit: int = Field(4, ge=1, le=16, description="Most attempts one request may ask for.")
    threshold: float = Field(
        0.75,
        ge=0,
        le=1,
        description="Calibrated IDR an attempt must reach to pass when a request gives none.",
    )
    min_gain: float = Field(
        0.01, ge=0, le=1, description="Calibrated IDR an attempt must add to the input's to count as better."
    )
    seam_bound: float = Field(
        1.0,
        gt=0,
        description=(
            "Largest seam measure accepted (gradient energy added along the blend boundary relative to the "
            "region's mean gradient; seamless ~0, a hard paste several units); attempts above it are not chosen."
        ),
    )
    warp_margin: float = Field(
        0.5, ge=0.1, le=2, description="reference-warp: region around the face (x face size per side) warped."
    )
    render_margin: float = Field(
        0.6,
        ge=0.1,
        le=2,
        description="render: margin around the face (x face size per side) of the crop sent.",
    )
    render_size: int = Field(
        1024, ge=128, le=4096, description="render: side the face crop is upscaled to before the edit (px)."
    )
    render_providers: list[str] = Field(
        default_factory=list,
        description="render: provider order asked of the render service (JSON list); empty: its configured order.",
    )
    sr_model_path: str = Field(
        "",
        description=(
            "render: super-resolution model (OpenCV dnn_superres .pb, e.g. ESPCN_x4.pb; needs opencv-contrib) "
            "for the crop upscale. Empty: Lanczos + sharpening."
        ),
    )
    render_timeout_s: float = Field(
        60.0, gt=0, le=600, description="Deadline of one EditImage call to the render service (seconds)."
    )
    memory_timeout_s: float = Field(
        10.0, gt=0, le=120, description="Deadline of the character look-up in the memory service (seconds)."
    )
    workers: int = Field(2, ge=1, le=64, description="Threads doing image work (detection, warps, scoring).")
    reference_cache: int = Field(
        64, ge=0, le=4096, description="Reference images whose faces are kept in memory (by content hash)."
    )
    reference_cache_max_age_s: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="How long a reference image's pixels and faces stay in memory after they were read (they are "
        "biometric data, and an erasure cannot name them): a character's erasure leaves none of them here for longer.",
    )

    @field_validator("strategy_order")
    @classmethod
    def _order(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("strategy_order needs at least one strategy")
        if len(set(v)) != len(v):
            raise ValueError("strategy_order lists a strategy twice")
        return v
