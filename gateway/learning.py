"""A character's self-learning for its owner: the LoRA versions (list, activate one, roll back the active one) and
the identity-retention report, from the trainer. Another user's character is 404, a frozen one 423."""

from __future__ import annotations

from typing import Any

from gateway.core import Caller, Gateway
from gateway.errors import ApiError
from idlock.v1 import trainer_service_pb2 as pb

STATUS = {
    pb.LORA_STATUS_TRAINING: "training",
    pb.LORA_STATUS_VALIDATING: "validating",
    pb.LORA_STATUS_ACTIVE: "active",
    pb.LORA_STATUS_ARCHIVED: "archived",
    pb.LORA_STATUS_REJECTED: "rejected",
}


def _when(ts: Any) -> str | None:
    return ts.ToDatetime().isoformat() + "Z" if ts.seconds else None


def _lora(row: pb.LoraModel) -> dict[str, Any]:
    validated = row.final_idr or None
    baseline = row.baseline_idr or None
    return {
        "lora_id": row.id,
        "version": row.version,
        "status": STATUS.get(row.status, "unknown"),
        "training_images": row.training_images,
        "baseline_idr": baseline,
        "validated_idr": validated,
        "gain": round(validated - baseline, 6) if validated is not None and baseline is not None else None,
        "created_at": _when(row.created_at),
        "activated_at": _when(row.activated_at),
    }


def _stats(st: pb.IdrStats) -> dict[str, Any]:
    if not st.count:
        return {"count": 0, "mean": None, "std": None, "min": None}
    return {"count": st.count, "mean": round(st.mean, 6), "std": round(st.std, 6), "min": round(st.min, 6)}


async def _owned(gw: Gateway, caller: Caller, character_id: str) -> None:
    await gw._character(caller, character_id)  # 404 for another user's
    await gw.reports.check(character_id)  # 423 while frozen


async def loras(gw: Gateway, caller: Caller, character_id: str) -> dict[str, Any]:
    await _owned(gw, caller, character_id)
    reply = await gw._rpc("trainer", gw.trainer.ListLoras, pb.ListLorasRequest(character_id=character_id))
    items = [_lora(r) for r in reply.loras]
    active = [i["version"] for i in items if i["status"] == "active"]
    return {"character_id": character_id, "active_version": active[0] if active else None, "items": items}


async def activate(gw: Gateway, caller: Caller, character_id: str, version: int) -> dict[str, Any]:
    listed = await loras(gw, caller, character_id)
    match = [i for i in listed["items"] if i["version"] == version]
    if not match:
        raise ApiError(404, "not_found", f"character {character_id} has no LoRA version {version}")
    await gw._rpc("trainer", gw.trainer.ActivateLora, pb.ActivateLoraRequest(lora_id=match[0]["lora_id"]))
    await gw.audit(caller, "lora_activate", "character", character_id, lora_id=match[0]["lora_id"])
    return await loras(gw, caller, character_id)


async def rollback(gw: Gateway, caller: Caller, character_id: str) -> dict[str, Any]:
    await _owned(gw, caller, character_id)
    await gw._rpc("trainer", gw.trainer.RollbackLora, pb.RollbackLoraRequest(character_id=character_id))
    await gw.audit(caller, "lora_rollback", "character", character_id)
    return await loras(gw, caller, character_id)


async def report(gw: Gateway, caller: Caller, character_id: str) -> dict[str, Any]:
    await _owned(gw, caller, character_id)
    r = await gw._rpc(
        "trainer", gw.trainer.GetLearningReport, pb.GetLearningReportRequest(character_id=character_id)
    )
    return {
        "character_id": character_id,
        "idr": _stats(r.overall),
        "idr_by_week": {g.key: _stats(g.stats) for g in r.by_week},
        "idr_by_provider": {g.key: _stats(g.stats) for g in r.by_provider},
        "idr_by_lora": {g.key: _stats(g.stats) for g in r.by_lora},
        "state": r.state or "ok",
        "decisions": [
            {
                "decision": d.decision,
                "reason": d.reason,
                "lora_id": d.lora_id or None,
                "recent_idr": round(d.recent_idr, 6),
                "baseline_idr": round(d.baseline_idr, 6),
                "recent_jobs": d.recent_jobs,
                "baseline_jobs": d.baseline_jobs,
                "at": _when(d.at),
            }
            for d in r.decisions
        ],
        "golden_images": r.golden_images,
        "golden_until_training": r.golden_until_training,
        "stage": r.stage or "idle",
        "recent": [
            {
                "at": _when(p.at),
                "idr": round(p.idr, 6),
                "lora_id": p.lora_id or None,
                "provider": p.provider,
                "job_id": p.job_id,
            }
            for p in r.recent
        ],
    }
