"""Settings of the face engine (env prefix IDLOCK_IDENTITY_): every process that detects, embeds or scores
faces (identity, refiner, trainer) reads the same variables, so they all score alike."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from idlock.settings import IdlockSettings


class FaceSettings(IdlockSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_IDENTITY_")
    component: ClassVar[str] = "identity"

    encoder: Literal["dlib", "arcface"] = Field(
        "dlib",
        description=(
            "Face encoder: dlib (offline default, weights from the face_recognition_models package, 128-d) or "
            "arcface (InsightFace buffalo_l on onnxruntime, 512-d, loaded from model_dir)."
        ),
    )
    model_dir: Path | None = Field(
        None,
        description=(
            "arcface only: folder holding buffalo_l's det_10g.onnx (SCRFD detector) and w600k_r50.onnx "
            "(ArcFace recognition). Nothing is ever downloaded."
        ),
    )
    onnx_providers: str = Field(
        "auto",
        description=(
            "arcface only: onnxruntime providers, comma separated. auto = CUDA when onnxruntime has it and an "
            "NVIDIA driver is present (falling back to the CPU with a warning when CUDA cannot start), else the "
            "CPU; naming CUDAExecutionProvider makes the service refuse to start when CUDA cannot be used."
        ),
    )
    detector: Literal["hog", "cnn"] = Field(
        "hog",
        description="dlib only: face detector, HOG (fast, CPU) or the CNN (MMOD) detector (slow on CPU).",
    )
    upsample: int = Field(
        -1,
        ge=-1,
        le=3,
        description=(
            "dlib only: times the detector upsamples the image; -1 = adaptive (0 first, then more when no face is "
            "found or the image is small)."
        ),
    )
    hog_min_score: float = Field(
        0.25,
        description=(
            "dlib HOG only: detections scoring below this are dropped as likely false positives, unless none scores "
            "higher (then the best one is kept, so a weak but real face is not lost)."
        ),
    )
    max_side: int = Field(
        1024,
        ge=160,
        le=8192,
        description="Detection runs on a copy downscaled so that its longer side is at most this (pixels).",
    )
    det_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="arcface only: SCRFD detection score threshold."
    )
    det_size: int = Field(
        640, ge=160, le=1280, description="arcface only: SCRFD input size (square, pixels)."
    )
    min_face_px: int = Field(
        40,
        ge=1,
        description="Smallest face (shorter side of the box, original pixels) accepted as a reference.",
    )
    min_blur: float = Field(
        15.0,
        ge=0.0,
        description=(
            "Smallest sharpness (variance of the Laplacian on the face crop resized to 112 px) accepted as a "
            "reference."
        ),
    )
    max_pixels: int = Field(
        50_000_000, ge=1, description="Images with more pixels than this are refused as decompression bombs."
    )
    max_references: int = Field(5, ge=1, le=20, description="Most reference images per identity.")
    consistency_threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description=(
            "A reference whose calibrated IDR against the other references (median) is below this is flagged as "
            "looking like a different person."
        ),
    )
    refine_threshold: float = Field(
        0.70, ge=0, le=1, description="Calibrated IDR below this: refine the face."
    )
    pass_threshold: float = Field(0.75, ge=0, le=1, description="Calibrated IDR at or above this: pass.")
    golden_threshold: float = Field(
        0.85, ge=0, le=1, description="Calibrated IDR above this: golden (candidate training image)."
    )
    calibration_path: Path | None = Field(
        None,
        description=(
            "JSON calibration (logistic on raw cosine) for the encoder; empty: the one shipped in "
            "libs/idlock/faces/calibration_data/<encoder>.json."
        ),
    )
    copy_threshold_path: Path | None = Field(
        None,
        description=(
            "JSON near-copy threshold on the face-print similarity of an output to a reference; empty: the one "
            "shipped in libs/idlock/faces/calibration_data/copy.json (fitted on real photos, with provenance)."
        ),
    )
    num_jitters: int = Field(1, ge=1, le=100, description="dlib only: jitters per descriptor (1 = fastest).")

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> FaceSettings:
        if not (self.refine_threshold <= self.pass_threshold <= self.golden_threshold):
            raise ValueError(
                "IDLOCK_IDENTITY_REFINE_THRESHOLD <= IDLOCK_IDENTITY_PASS_THRESHOLD <= "
                "IDLOCK_IDENTITY_GOLDEN_THRESHOLD must hold"
            )
        return self
