"""Settings of the trainer service (env prefix IDLOCK_TRAINER_)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from idlock.settings import GrpcServerSettings

DEFAULT_TEST_SCENES = [
    "a portrait photo of the character, studio lighting",
    "the character walking in a city street at dusk",
    "the character sitting in a forest camp by a fire",
    "a close-up of the character smiling, natural light",
]


class TrainerSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_TRAINER_")
    component: ClassVar[str] = "trainer"

    # --- base model ---
    base_model_path: Path | None = Field(
        None,
        description=(
            "Folder of the diffusers base pipeline the LoRAs are trained on (SD 1.5 or SDXL, save_pretrained "
            "layout, mounted; nothing is downloaded). Empty: training and validation are unavailable."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Training device: auto picks CUDA (bf16, SDPA, gradient checkpointing) when present.",
    )

    # --- golden collection ---
    golden_threshold: float = Field(
        0.85,
        ge=0,
        le=1,
        description="Calibrated IDR above which a succeeded job's image becomes a golden candidate.",
    )
    collector_enabled: bool = Field(
        True,
        description="Consume job.succeeded / feedback.recorded / character.deleted events in this process.",
    )
    nats_wait_s: float = Field(
        10.0,
        gt=0,
        description="How long start-up waits for NATS; without it no events are consumed or published.",
    )

    # --- dataset ---
    dataset_resolution: int = Field(
        512,
        ge=32,
        le=2048,
        description="Side of the dataset images when a request gives none (512 SD 1.5, 1024 SDXL).",
    )
    min_face_px: int = Field(
        64, ge=0, description="Golden images whose face is smaller than this (pixels) are dropped."
    )
    min_blur: float = Field(
        20.0,
        ge=0,
        description="Images whose sharpness (variance of the Laplacian, 256 px gray) is below this are dropped.",
    )
    dedup_distance: int = Field(
        6,
        ge=0,
        le=64,
        description="Perceptual-hash (pHash) distance at or below which two images count as duplicates.",
    )
    dataset_face_check: bool = Field(
        True,
        description="Detect faces (identity engine) to drop faceless or small-face images and make face crops.",
    )
    face_crops: bool = Field(
        True, description="Add a face-aligned crop of each kept image besides the full frame."
    )
    token: str = Field(
        "sks", description="Rare token that names the character in captions: 'a photo of <token> person'."
    )
    dataset_max_attribute_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="No clothing, prop or setting tag on more than this share of a dataset's images (the least "
        "preferred images carrying it are dropped), so an outfit most scenes share does not bind to the trigger "
        "word; 1 turns balancing off.",
    )
    dataset_balance_min_images: int = Field(
        8,
        ge=1,
        description="Balancing never takes a dataset below this many images (it reports the imbalance).",
    )
    dataset_boost_weight: int = Field(
        2, ge=1, le=10, description="How many times as often training samples an image its owner rated up."
    )
    auto_train_min_images: int = Field(
        30,
        ge=0,
        description="Golden images of a character that trigger dataset building and training; 0 disables.",
    )

    # --- training ---
    rank: int = Field(32, ge=1, le=128, description="LoRA rank (32-64 recommended).")
    learning_rate: float = Field(1e-4, gt=0, le=1, description="AdamW learning rate of the LoRA weights.")
    steps: int = Field(800, ge=1, le=100000, description="Training steps (500-1000 recommended).")
    batch_size: int = Field(2, ge=1, le=16, description="Images per training step (1-4).")
    checkpoint_every: int = Field(100, ge=1, description="Save a resumable checkpoint every N steps.")
    progress_every: int = Field(10, ge=1, description="Publish a lora.progress event every N steps.")
    seed: int = Field(1234, ge=0, description="Seed of the LoRA initialisation, noise and timesteps.")
    ack_wait_s: float = Field(
        60.0, gt=0, description="JetStream ack_wait of a jobs.train delivery (seconds); heartbeats extend it."
    )
    max_deliver: int = Field(
        3, ge=1, description="Deliveries of one training job before it is dead-lettered."
    )

    # --- validation ---
    validation_margin: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Mean calibrated IDR the new LoRA must gain over the baseline to be approved.",
    )
    validation_seeds: list[int] = Field(
        default_factory=lambda: [11, 22], description="Seeds each test scene is rendered with (JSON list)."
    )
    test_scenes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TEST_SCENES),
        description="Prompts of the validation scenes (JSON list); the character token is prepended.",
    )
    validation_steps: int = Field(30, ge=1, le=200, description="Denoising steps of a validation render.")
    validation_size: int = Field(
        0, ge=0, le=2048, description="Side of validation renders; 0: the dataset resolution."
    )
    auto_activate: bool = Field(True, description="Activate an approved LoRA at once (auto-deployment).")
    checkpoint_candidates: int = Field(
        2,
        ge=1,
        le=8,
        description="LoRA checkpoints a run exports at evenly spaced steps (the last included); validation "
        "scores each on the test scenes and the best is the one kept and decided on (1: the last only).",
    )
    retrain_every_s: float = Field(
        7 * 24 * 3600.0,
        ge=0,
        description="Time trigger: a character trains again this long after its last run when new golden "
        "images arrived since (default weekly); 0 turns it off.",
    )
    schedule_every_s: float = Field(
        3600.0, gt=0, description="How often the time trigger looks for characters due to train again (s)."
    )
    watch_window: int = Field(
        20,
        ge=2,
        le=1000,
        description="Degradation watch: the recent succeeded jobs of a character whose mean calibrated IDR is "
        "compared with the baseline (the jobs before them, or before the active LoRA's activation).",
    )
    watch_min_jobs: int = Field(
        5, ge=1, le=1000, description="Degradation watch: jobs each side needs before anything is decided."
    )
    watch_margin: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Degradation watch: a drop of the recent mean IDR below the baseline's by more than this "
        "marks the character degraded (and rolls back a LoRA activated before the drop).",
    )
    watch_rollback: bool = Field(
        True, description="Roll back at once an active LoRA whose jobs' IDR fell below the jobs' before it."
    )

    @field_validator("test_scenes")
    @classmethod
    def _scenes(cls, v: list[str]) -> list[str]:
        out = [s.strip() for s in v if s.strip()]
        if not out:
            raise ValueError("IDLOCK_TRAINER_TEST_SCENES needs at least one scene prompt")
        return out

    @field_validator("validation_seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("IDLOCK_TRAINER_VALIDATION_SEEDS needs at least one seed")
        return v
