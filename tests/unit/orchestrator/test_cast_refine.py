"""The repair of a scene with several characters (`CastFlow.refine`), against stand-in peers: only the faces below
the threshold are repaired, each at its own place with its own references; every face is scored again after each
repair, and a repair that makes another character's face worse is discarded."""

from __future__ import annotations

from types import SimpleNamespace

from idlock.v1 import common_pb2, identity_service_pb2, refiner_service_pb2
from idlock.v1 import job_checkpoint_pb2 as ck
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.cast_flow import CastFlow
from services.orchestrator.flow import FlowConfig, FlowDeps

A, B = "c_arya", "c_bran"
BOXES = {
    A: common_pb2.BoundingBox(x=10, y=10, width=50, height=50),
    B: common_pb2.BoundingBox(x=200, y=10, width=50, height=50),
}


class Peers:
    """Scores by image: `idr[uri][character]`; a repair of character k's face answers `repaired[k]`."""

    def __init__(self, idr: dict[str, dict[str, float]], repaired: dict[str, str]) -> None:
        self.idr, self.repaired = idr, repaired
        self.refined: list[tuple[str, tuple[float, float]]] = []

    async def score_cast(self, request, *, timeout_s):
        scores = self.idr[request.image.ref.uri]
        out = identity_service_pb2.ScoreIdentityResponse(faces_detected=2)
        for k, c in enumerate(request.characters):
            v = scores[c.character_id]
            out.matches.add(
                character_id=c.character_id,
                face_found=True,
                face_index=k,
                box=BOXES[c.character_id],
                score=common_pb2.IdrScore(calibrated=v),
            )
        return out

    async def refine_image(self, request, *, timeout_s):
        who = A if request.target_box.x == BOXES[A].x else B
        self.refined.append((who, (request.target_box.x, request.target_box.y)))
        best = common_pb2.ImageRef(uri=self.repaired[who])
        return refiner_service_pb2.RefineResponse(
            improved=True, best=best, attempts=[refiner_service_pb2.RefineAttempt()]
        )


async def _refine(peers: Peers) -> ck.RefineStep:
    flow = CastFlow(FlowDeps(peers, extractor=None, config=FlowConfig(refine_threshold=0.7)))
    job = SimpleNamespace(id="job_1", prompt="Arya and Bran", character_id=A)
    ctx = ck.ContextStep()
    for cid, name, role in ((A, "Arya", "on the left"), (B, "Bran", "on the right")):
        ctx.cast.add(
            member=common_pb2.CastMember(character_id=cid, name=name, role=role), placement=role.split()[-1]
        )
    render = ck.RenderStep(image=common_pb2.ImageRef(uri="mem://render"))
    score = await flow.score(job, ctx, render.image)
    run = SimpleNamespace(confirm=lambda step: _done())
    return await flow.refine(job, run, pb.GenerationOptions(), ctx, render, score)


async def _done() -> None:
    return None


async def test_only_the_low_face_is_repaired_at_its_place() -> None:
    peers = Peers({"mem://render": {A: 0.3, B: 0.9}, "mem://fixA": {A: 0.92, B: 0.89}}, {A: "mem://fixA"})
    out = await _refine(peers)
    assert peers.refined == [(A, (10.0, 10.0))]  # Bran's face passed: not touched
    a, b = out.cast
    assert a.refined and not b.refined and out.refined and out.image.uri == "mem://fixA"
    assert round(a.idr_after.calibrated, 2) == 0.92 and round(b.idr_after.calibrated, 2) == 0.89
    assert a.note.startswith("repaired: calibrated IDR 0.300 -> 0.920")


async def test_a_repair_that_makes_another_face_worse_is_discarded() -> None:
    peers = Peers({"mem://render": {A: 0.3, B: 0.9}, "mem://fixA": {A: 0.92, B: 0.6}}, {A: "mem://fixA"})
    out = await _refine(peers)
    a, b = out.cast
    assert not out.refined and not a.refined and not out.HasField("image")
    assert "made Bran worse: discarded" in a.note
    assert not a.HasField("idr_after") and round(b.idr_before.calibrated, 2) == 0.9


async def test_each_low_face_is_repaired_in_turn_on_the_image_so_far() -> None:
    peers = Peers(
        {
            "mem://render": {A: 0.3, B: 0.25},
            "mem://fixA": {A: 0.9, B: 0.25},
            "mem://fixB": {A: 0.9, B: 0.93},
        },
        {A: "mem://fixA", B: "mem://fixB"},
    )
    out = await _refine(peers)
    assert [who for who, _ in peers.refined] == [A, B]
    a, b = out.cast
    assert a.refined and b.refined and out.image.uri == "mem://fixB"
    assert round(a.idr_after.calibrated, 2) == 0.9 and round(b.idr_after.calibrated, 2) == 0.93
