"""Generation jobs: submit, status, cancel, server-sent events, feedback."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from opentelemetry import trace

from gateway.core import GenerateInput
from gateway.deps import CallerDep, GatewayDep, IdempotencyDep
from gateway.schemas import ErrorBody, FeedbackIn, FeedbackRecorded, GenerateIn, JobAccepted, JobOut
from idlock import telemetry

router = APIRouter(
    prefix="/api/v1",
    tags=["jobs"],
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        429: {"model": ErrorBody},
    },
)


_JOB = {"job_id": "$response.body#/job_id"}
JOB_LINKS = {
    "GetJob": {"operationId": "get_job", "parameters": _JOB},
    "CancelJob": {"operationId": "cancel_job", "parameters": _JOB},
    "JobEvents": {"operationId": "job_events", "parameters": _JOB},
    "JobFeedback": {"operationId": "job_feedback", "parameters": _JOB},
}


@router.post(
    "/generate",
    status_code=202,
    operation_id="generate",
    response_model=JobAccepted,
    responses={
        202: {"links": JOB_LINKS},
        409: {"model": ErrorBody},
        422: {"model": ErrorBody, "description": "The Idempotency-Key was used for another request."},
        423: {"model": ErrorBody, "description": "The character is frozen while a report is reviewed."},
        503: {"model": ErrorBody},
    },
)
async def generate(body: GenerateIn, who: CallerDep, gw: GatewayDep, idem: IdempotencyDep) -> JSONResponse:
    """Queue a scene for a character. With `Idempotency-Key`, a retried submission returns the same job; the same
    key with another body is refused with 422 `idempotency_key_reused`."""
    ids = body.cast_ids()
    telemetry.character_id_var.set(ids[0])  # this request's task only: its log lines and calls
    accepted = await gw.submit(
        who,
        GenerateInput(
            character_id=ids[0],
            cast=[(c, body.roles.get(c, "")) for c in ids] if len(ids) > 1 else [],
            prompt=body.prompt,
            pose_image_url=body.pose_image_url,
            style_overrides=list(body.style_overrides),
            options=body.options.model_dump(),
        ),
        idem,
    )
    trace.get_current_span().set_attribute("idlock.job_id", accepted["job_id"])
    return JSONResponse(accepted, status_code=202, headers={"Location": f"/api/v1/job/{accepted['job_id']}"})


@router.get(
    "/job/{job_id}",
    operation_id="get_job",
    response_model=JobOut,
    responses={
        423: {"model": ErrorBody, "description": "The job's character is frozen while a report is reviewed."}
    },
)
async def get_job(job_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    """Status, result references with download URLs, and metrics of one of your jobs."""
    return await gw.get_job(who, job_id)


@router.post(
    "/job/{job_id}/cancel",
    operation_id="cancel_job",
    response_model=JobOut,
    responses={409: {"model": ErrorBody}},
)
async def cancel_job(job_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    """Cancel a queued or running job."""
    return await gw.cancel_job(who, job_id)


@router.get(
    "/job/{job_id}/events",
    operation_id="job_events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
)
async def job_events(job_id: str, who: CallerDep, gw: GatewayDep) -> StreamingResponse:
    """Server-sent events with the job's status changes until it ends (`event: succeeded|failed|cancelled`)."""
    stream = await gw.job_events(who, job_id)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/job/{job_id}/feedback",
    operation_id="job_feedback",
    response_model=FeedbackRecorded,
    responses={409: {"model": ErrorBody}},
)
async def job_feedback(job_id: str, body: FeedbackIn, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    """Thumbs up or down on a result (used by self-learning)."""
    return await gw.feedback(who, job_id, body.rating, body.comment)
