"""Settings of the orchestrator service (env prefix IDLOCK_ORCHESTRATOR_)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from idlock.settings import GrpcServerSettings


class OrchestratorSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_ORCHESTRATOR_")
    component: ClassVar[str] = "orchestrator"

    # --- the worker (JetStream consumer on idlock.jobs.generate) ---
    worker_enabled: bool = Field(
        True,
        description="Run the generation worker in this process (false: API only; another replica works).",
    )
    concurrency: int = Field(2, ge=1, le=64, description="Generation jobs one process runs at once.")
    local_start: bool = Field(
        True,
        description="Run a job accepted here on this replica at once when it has a free slot, its work message "
        "held in the outbox until the lease runs out (false: every job goes through the queue).",
    )
    ack_wait_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="JetStream ack_wait of a job delivery (seconds); heartbeats extend it while a job runs.",
    )
    max_deliver: int = Field(
        4,
        ge=1,
        le=20,
        description="Deliveries of one job message before it is dead-lettered and the job ends failed (a job "
        "started where it was accepted has its own attempt first).",
    )
    backoff_s: list[float] = Field(
        default_factory=lambda: [2.0, 10.0, 30.0],
        description="Delay before each redelivery after a transient failure (JSON list, seconds; last repeats).",
    )

    # --- outages: how a step waits for a peer or object storage that is unavailable ---
    retry_window_s: float = Field(
        600.0,
        gt=0,
        le=86400,
        description=(
            "How long one step waits out an unavailable peer or object storage (connection refused, restarting, "
            "full, not writable) before the job fails naming it (seconds; bounded by job_timeout_s). Bad input, "
            "not found, no consent and moderation fail at once."
        ),
    )
    retry_window_by_peer_s: dict[str, float] = Field(
        default_factory=dict,
        description=(
            'A retry window of its own per peer, by name (JSON object, e.g. {"render": 1800, "storage": 300}; '
            "seconds); the others use retry_window_s."
        ),
    )
    retry_initial_s: float = Field(
        1.0, gt=0, le=60, description="First wait before trying an unavailable peer again (seconds; doubles)."
    )
    retry_max_interval_s: float = Field(
        15.0, gt=0, le=600, description="Longest wait between two tries of an unavailable peer (seconds)."
    )
    job_timeout_s: float = Field(
        3600.0,
        gt=0,
        description="A job's own deadline from its submission: waiting for a peer never goes past it (seconds).",
    )
    outbox_poll_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description=(
            "How often the outbox relay looks for messages other processes left unpublished (seconds); this "
            "process's own are published at once."
        ),
    )

    # --- per-step deadlines (seed §6: generation 120 s, refine 90 s) ---
    generation_timeout_s: float = Field(
        120.0, gt=0, le=900, description="Deadline of the render step (seconds)."
    )
    refine_timeout_s: float = Field(90.0, gt=0, le=900, description="Deadline of the refine step (seconds).")
    step_timeout_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Deadline of the other steps: context, identity scoring, state extraction, recording (seconds).",
    )

    # --- admission ---
    max_active_jobs_per_owner: int = Field(
        10, ge=1, description="Queued + running jobs one owner may have; more is RESOURCE_EXHAUSTED."
    )
    prompt_max_chars: int = Field(2000, ge=16, le=20000, description="Longest accepted prompt (characters).")
    max_style_overrides: int = Field(
        16, ge=0, le=256, description="Most style overrides one request may carry."
    )

    # --- the reconciler ---
    queue_metrics_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often the job queue's depth and lag are read from JetStream for metrics (s).",
    )
    reconcile_interval_s: float = Field(
        30.0, gt=0, description="How often jobs stuck in queued/running are looked for (seconds)."
    )
    stuck_after_s: float = Field(
        600.0,
        gt=0,
        description="A queued/running job untouched this long (and not leased by a live worker) is re-enqueued (seconds).",
    )
    max_requeues: int = Field(
        3, ge=0, description="Re-enqueues of one stuck job by the reconciler before it is marked failed."
    )

    # --- the refine gate ---
    refine_threshold: float = Field(
        0.70, ge=0, le=1, description="Calibrated IDR below which the face needs refinement (seed: 0.70)."
    )

    # --- video jobs (options.video) ---
    video_timeout_s: float = Field(
        900.0, gt=0, le=3600, description="Deadline of one video render (provider polling included, seconds)."
    )
    video_duration_s: float = Field(
        0.0, ge=0, le=60, description="Clip length when a job names none (0: the render provider's default)."
    )
    video_frame_every_s: float = Field(
        1.0,
        gt=0,
        le=30,
        description="IDR is scored on the first frame and on one frame every this many seconds.",
    )
    video_regenerations: int = Field(
        1,
        ge=0,
        le=3,
        description="Re-renders of a video whose lowest frame IDR is below the refine threshold.",
    )
    near_copy: Literal["regenerate", "flag", "fail"] = Field(
        "regenerate",
        description=(
            "What an image job does when its output's face is a near-copy of a reference photo: regenerate (once, "
            "asking the renderer to re-pose the character; still a copy: flag), flag (keep it, say so in the "
            "metrics; never golden either way) or fail (end the job with near_copy). Video jobs flag."
        ),
    )

    # --- state extraction (vision LLM when configured, a labelled heuristic otherwise) ---
    gemini_api_key: SecretStr = Field(
        SecretStr(""),
        description="Gemini API key for state extraction. Empty: the keyword heuristic is used.",
    )
    gemini_base_url: str = Field(
        "", description="Gemini API base URL (a fake server in tests). Empty: Google's."
    )
    gemini_model: str = Field(
        "gemini-2.5-flash", description="Gemini vision model that reads the state of a scene."
    )

    # --- misc ---
    watch_poll_s: float = Field(
        0.25,
        gt=0,
        le=10,
        description="How often WatchJob looks at the job row for changes made by another replica (seconds); "
        "this replica's own changes reach its watchers at once.",
    )
    cost_per_job_usd: float = Field(
        0.0,
        ge=0,
        description="Flat cost added to the render's estimated cost in each job's usage record (USD).",
    )

    @field_validator("backoff_s")
    @classmethod
    def _backoff_non_negative(cls, v: list[float]) -> list[float]:
        if any(x < 0 for x in v):
            raise ValueError("backoff delays must be >= 0")
        return v
