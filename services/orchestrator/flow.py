"""What every generation flow shares: the `Flow` interface the worker runs, the peers a flow calls, its settings,
its outcomes and the errors that end a job. No gRPC or NATS imports here.

A flow is one kind of job (an image: `image_flow.py`, a video: `video_flow.py`). It is a sequence of steps run by a
`StepRunner` (`runner.py`), which skips what the job's checkpoint holds, writes results before paid calls and
ends the job; flows know nothing of each other, and the worker (`worker.py`) picks one from the job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from idlock.errors import InvalidInput, NotFound, PermissionDenied, PreconditionFailed, Unimplemented
from idlock.retry import RetryPolicy
from idlock.v1 import (
    common_pb2,
    identity_service_pb2,
    memory_service_pb2,
    refiner_service_pb2,
    render_service_pb2,
)
from idlock.v1 import orchestrator_service_pb2 as pb

if TYPE_CHECKING:
    from idlock.storage import ObjectStore
    from services.orchestrator.models import Job
    from services.orchestrator.runner import StepRunner
    from services.orchestrator.state_extraction import StateExtractor


class Outcome(StrEnum):
    """What running a job came to (the worker acks the message for each; a transient fault raises instead)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NEEDS_MORE_REFS = "needs_more_refs"
    #: cancelled by its owner, or taken over by another worker meanwhile: this worker stopped
    CANCELLED = "cancelled"
    #: the job had already ended: nothing to do
    TERMINAL = "terminal"
    #: no such job
    MISSING = "missing"


#: refine note prefix when the refiner could not run (the job goes on with the unrefined image)
REFINER_UNAVAILABLE = "refiner could not run; the image was kept"
#: errors that end a job `failed` at once; anything else is transient and the message is redelivered
PERMANENT = (InvalidInput, NotFound, PreconditionFailed, PermissionDenied, Unimplemented)


class StopJob(Exception):
    """The job is no longer running for this worker (cancelled, or another worker took it over)."""


class JobFailed(Exception):
    """The job ends now with `outcome` (failed or needs_more_refs), an error code and a message."""

    def __init__(self, outcome: Outcome, code: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.code = code
        self.message = message


def character_gone(job: Job) -> JobFailed:
    return JobFailed(Outcome.FAILED, "character_not_found", f"character {job.character_id} no longer exists")


class Peers(Protocol):
    """The services a flow calls. Each call takes the time it may use; a peer's status comes back as a domain
    error (`idlock.errors`)."""

    async def get_character(
        self, character_id: str, owner_id: str, *, timeout_s: float
    ) -> memory_service_pb2.Character: ...

    async def build_context(
        self,
        character_id: str,
        owner_id: str,
        prompt: str,
        style_overrides: Sequence[str],
        *,
        timeout_s: float,
    ) -> memory_service_pb2.BuildContextResponse: ...

    async def build_scene_context(
        self, request: memory_service_pb2.BuildSceneContextRequest, *, timeout_s: float
    ) -> memory_service_pb2.BuildSceneContextResponse: ...

    async def score_cast(
        self, request: identity_service_pb2.ScoreIdentityRequest, *, timeout_s: float
    ) -> identity_service_pb2.ScoreIdentityResponse: ...

    async def render_image(
        self, request: render_service_pb2.RenderImageRequest, *, timeout_s: float
    ) -> render_service_pb2.RenderImageResponse: ...

    async def render_video(
        self, request: render_service_pb2.RenderVideoRequest, *, timeout_s: float
    ) -> render_service_pb2.RenderVideoResponse: ...

    async def score_identity(
        self,
        character_id: str,
        identity: common_pb2.IdentityVector,
        image: common_pb2.ImageRef,
        *,
        references: Sequence[common_pb2.ImageRef] = (),
        timeout_s: float,
    ) -> identity_service_pb2.ScoreIdentityResponse: ...

    async def extract_frames(
        self, request: identity_service_pb2.ExtractFramesRequest, *, timeout_s: float
    ) -> identity_service_pb2.ExtractFramesResponse: ...

    async def record_episode(
        self, episode: memory_service_pb2.Episode, *, timeout_s: float
    ) -> memory_service_pb2.RecordEpisodeResponse: ...

    async def refine_image(
        self, request: refiner_service_pb2.RefineRequest, *, timeout_s: float
    ) -> refiner_service_pb2.RefineResponse: ...


@dataclass(frozen=True)
class FlowConfig:
    generation_timeout_s: float = 120.0
    refine_timeout_s: float = 90.0
    step_timeout_s: float = 30.0
    refine_threshold: float = 0.70
    lease_s: float = 30.0
    cost_per_job_usd: float = 0.0
    video_timeout_s: float = 900.0
    video_duration_s: float = 0.0
    video_frame_every_s: float = 1.0
    video_regenerations: int = 1
    operation_watch_s: float = 0.25
    #: regenerate | flag | fail (settings.near_copy)
    near_copy: str = "regenerate"
    #: how a step waits out a peer or storage outage; bounded by the job's own deadline
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    job_timeout_s: float = 3600.0

    @classmethod
    def from_settings(cls, s: Any) -> FlowConfig:
        return cls(
            generation_timeout_s=s.generation_timeout_s,
            refine_timeout_s=s.refine_timeout_s,
            step_timeout_s=s.step_timeout_s,
            refine_threshold=s.refine_threshold,
            lease_s=s.ack_wait_s,
            cost_per_job_usd=s.cost_per_job_usd,
            video_timeout_s=s.video_timeout_s,
            video_duration_s=s.video_duration_s,
            video_frame_every_s=s.video_frame_every_s,
            video_regenerations=s.video_regenerations,
            near_copy=s.near_copy,
            retry=RetryPolicy(
                initial_s=s.retry_initial_s,
                max_interval_s=s.retry_max_interval_s,
                window_s=s.retry_window_s,
                window_by_peer_s=tuple(sorted(s.retry_window_by_peer_s.items())),
            ),
            job_timeout_s=s.job_timeout_s,
        )


@dataclass(frozen=True)
class FlowDeps:
    """What a flow works with: the peers it calls, the state extractor, its settings and the object store."""

    peers: Peers
    extractor: StateExtractor
    config: FlowConfig
    objects: ObjectStore | None = None


class Prefetch(Protocol):
    """Work a flow starts from the queued job's row while the job is being claimed (it only reads)."""

    def matches(self, job: Job) -> bool: ...

    def cancel(self) -> None: ...


class Flow(Protocol):
    """One kind of job, from its first step to its end."""

    def prefetch(self, queued: Job) -> Prefetch | None:
        """Start reads that need only the queued row (None: nothing to start)."""
        ...

    async def run(
        self, job: Job, options: pb.GenerationOptions, steps: StepRunner, prefetched: Prefetch | None
    ) -> Outcome:
        """Run (or resume) the claimed job's steps through `steps` and end it. Raises `JobFailed`, a permanent
        error or `StopJob` to end it otherwise; any other error is transient (the job is retried)."""
        ...


def job_seed(job_id: str) -> int:
    """A render seed derived from the job id: a redelivered job draws the same scene."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") % 2_147_483_646 + 1


__all__ = [
    "PERMANENT",
    "Flow",
    "FlowConfig",
    "FlowDeps",
    "JobFailed",
    "Outcome",
    "Peers",
    "Prefetch",
    "StopJob",
    "character_gone",
    "job_seed",
]
