"""Response models of a character's self-learning: its LoRA versions and its identity-retention report."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LoraOut(BaseModel):
    lora_id: str
    version: int
    status: str = Field(description="training, validating, active, archived or rejected.")
    training_images: int = Field(description="Images the version was trained on.")
    baseline_idr: float | None = Field(
        description="Mean calibrated IDR of the validation scenes without it (or with the LoRA active then)."
    )
    validated_idr: float | None = Field(description="Mean calibrated IDR of the validation scenes with it.")
    gain: float | None = Field(description="validated_idr - baseline_idr.")
    created_at: str | None
    activated_at: str | None = Field(description="When it was last made active.")


class LoraList(BaseModel):
    character_id: str
    active_version: int | None
    items: list[LoraOut] = Field(description="Oldest version first.")


class IdrStatsOut(BaseModel):
    count: int
    mean: float | None
    std: float | None
    min: float | None


class LearningDecisionOut(BaseModel):
    decision: str = Field(
        description="retrain_requested, activated, rejected, rolled_back or degraded (see the reason)."
    )
    reason: str
    lora_id: str | None
    recent_idr: float
    baseline_idr: float
    recent_jobs: int
    baseline_jobs: int
    at: str | None


class IdrPointOut(BaseModel):
    at: str | None = Field(description="When the job's result was delivered.")
    idr: float = Field(description="Its calibrated IDR as delivered.")
    lora_id: str | None = Field(description="The LoRA that rendered it; null: none.")
    provider: str
    job_id: str


class LearningReportOut(BaseModel):
    character_id: str
    idr: IdrStatsOut = Field(
        description="Calibrated IDR of the character's succeeded jobs as delivered (refined when refined; a "
        "video's mean frame IDR)."
    )
    idr_by_week: dict[str, IdrStatsOut] = Field(description="By ISO week, e.g. 2026-W49.")
    idr_by_provider: dict[str, IdrStatsOut]
    idr_by_lora: dict[str, IdrStatsOut] = Field(description="By LoRA id; none: jobs made without a LoRA.")
    state: str = Field(
        description="ok, or the last decision (degraded, rolled_back) while fewer than a window of jobs came after"
    )
    decisions: list[LearningDecisionOut] = Field(
        description="What the degradation watch decided, oldest first."
    )
    golden_images: int
    golden_until_training: int = Field(
        description="Golden images still needed before training starts by itself (0: automatic training is off)."
    )
    stage: str = Field(
        description="idle (no golden image yet), collecting, training, validating, active (a LoRA renders it), "
        "rejected (its last LoRA was not good enough) or rolled_back."
    )
    recent: list[IdrPointOut] = Field(
        description="The newest succeeded jobs (at most 200), oldest first: the points of a chart over time."
    )
