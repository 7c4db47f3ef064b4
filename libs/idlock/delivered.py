"""The identity retention a job delivered, read alike by the orchestrator's metrics and the trainer's watch."""

from __future__ import annotations

from typing import NamedTuple

from idlock.v1 import orchestrator_service_pb2 as pb


class DeliveredIdr(NamedTuple):
    calibrated: float
    encoder: str
    kind: str  # image | video


def delivered_idr(metrics: pb.JobMetrics) -> DeliveredIdr | None:
    """The result's calibrated IDR as delivered: refined when refined, a video's mean frame IDR; None when the
    result was not scored."""
    if metrics.frames_scored:
        return DeliveredIdr(float(metrics.frame_idr_mean), metrics.idr_before.encoder or "frames", "video")
    idr = metrics.idr_after if metrics.refined and metrics.idr_after.encoder else metrics.idr_before
    return DeliveredIdr(float(idr.calibrated), idr.encoder, "image") if idr.encoder else None


__all__ = ["DeliveredIdr", "delivered_idr"]
