"""A character's self-learning, for its owner: LoRA versions (list, activate, roll back) and the identity-retention
report (`/metrics`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from gateway import learning
from gateway.deps import CallerDep, GatewayDep
from gateway.learning_schemas import LearningReportOut, LoraList
from gateway.schemas import ErrorBody

router = APIRouter(
    prefix="/api/v1/characters/{character_id}",
    tags=["self-learning"],
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        423: {"model": ErrorBody, "description": "The character is frozen while a report is reviewed."},
        429: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
Version = Annotated[int, Path(ge=1, le=1_000_000, description="The LoRA version (1, 2, ...).")]


@router.get("/metrics", operation_id="character_learning_report", response_model=LearningReportOut)
async def character_metrics(character_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    """Identity retention of the character's jobs overall, per week, per provider and per LoRA version; its
    degradation state and what the degradation watch decided; golden images and the next automatic training."""
    return await learning.report(gw, who, character_id)


@router.get("/loras", operation_id="list_loras", response_model=LoraList)
async def list_loras(character_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    """The character's LoRA versions with their training data size, validation IDR (with and without) and status."""
    return await learning.loras(gw, who, character_id)


@router.post(
    "/loras/{version}/activate",
    operation_id="activate_lora",
    response_model=LoraList,
    responses={409: {"model": ErrorBody, "description": "The version is rejected, or still training."}},
)
async def activate_lora(
    character_id: str, version: Version, who: CallerDep, gw: GatewayDep
) -> dict[str, Any]:
    """Make a version the active one (renders use it); the active one before it is archived."""
    return await learning.activate(gw, who, character_id, version)


@router.post(
    "/loras/rollback",
    operation_id="rollback_lora",
    response_model=LoraList,
    responses={409: {"model": ErrorBody, "description": "No LoRA is active."}},
)
async def rollback_lora(character_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    """Archive the active version and make the one active before it active again (none: the base model)."""
    return await learning.rollback(gw, who, character_id)
