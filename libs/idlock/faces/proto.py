"""Face results as protobuf messages (`common.proto`, `identity_service.proto`): one mapping for every service."""

from __future__ import annotations

from idlock.v1 import common_pb2
from idlock.v1 import identity_service_pb2 as ipb

from .copies import CopyCheck
from .engine import FaceInfo

VERDICTS = {
    "refine": common_pb2.VERDICT_REFINE,
    "borderline": common_pb2.VERDICT_BORDERLINE,
    "pass": common_pb2.VERDICT_PASS,
    "golden": common_pb2.VERDICT_GOLDEN,
}


def idr_pb(raw: float, calibrated: float, verdict: str, encoder: str) -> common_pb2.IdrScore:
    return common_pb2.IdrScore(
        raw=raw,
        calibrated=calibrated,
        verdict=VERDICTS.get(verdict, common_pb2.VERDICT_UNSPECIFIED),
        encoder=encoder,
    )


def copy_pb(check: CopyCheck | None) -> common_pb2.CopyCheck:
    """`checked` is false when there was no reference face to compare with."""
    if check is None:
        return common_pb2.CopyCheck(checked=False)
    return common_pb2.CopyCheck(
        checked=True,
        similarity=check.similarity,
        near_copy=check.near_copy,
        reference_index=check.reference_index,
        threshold=check.threshold,
    )


def face_pb(face: FaceInfo) -> ipb.DetectedFace:
    x1, y1, x2, y2 = face.box
    return ipb.DetectedFace(
        box=common_pb2.BoundingBox(x=x1, y=y1, width=x2 - x1, height=y2 - y1),
        landmarks=[common_pb2.Point(x=x, y=y) for x, y in face.landmarks],
        score=face.score,
        face_size_px=face.size_px,
        blur=face.blur,
        pose=ipb.HeadPose(yaw=face.pose.yaw, pitch=face.pose.pitch, roll=face.pose.roll),
    )


__all__ = ["VERDICTS", "copy_pb", "face_pb", "idr_pb"]
