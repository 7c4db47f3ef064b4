"""The video branch of the generation flow (`options.video`), checkpointed like the image steps:

    context → render (video) → score (first frame + one every N s) → regenerate gate → state (last frame) → record

The provider's long-running operation is saved in the job checkpoint (`render_operation`, shown as
`Job.provider_operation`) as soon as the render service records it, before it is polled to the end: a restarted
worker passes it back in `RenderVideoRequest.operation_name` and resumes it instead of paying for a second video
(the render service also replays a finished render per job, and resumes an operation it recorded itself).
Below the refine threshold (lowest frame IDR, or no face in the first frame) the video is regenerated (at most
`video_regenerations` times) and the better one is kept. The episode is recorded as kind video; memory
consolidates every 3 videos.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from idlock.errors import DeadlineExceeded, IdlockError, NotFound
from idlock.v1 import (
    common_pb2,
    identity_service_pb2,
    render_service_pb2,
)
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.flow import GenerationFlow, job_seed, scene_episode, step_model_seconds
from services.orchestrator.jobs import dict_to_msg, msg_to_dict
from services.orchestrator.models import SUCCEEDED, Job

log = logging.getLogger("idlock.orchestrator.video")

VIDEO_STEPS = ("context", "render", "score", "regenerate", "state", "record")
#: Veo takes at most 3 reference images
MAX_VIDEO_REFERENCES = 3


def _quality(score: Mapping[str, Any]) -> tuple[float, float]:
    return (float(score.get("frame_idr_min", 0.0)), float(score.get("frame_idr_mean", 0.0)))


class VideoSteps:
    def __init__(self, flow: GenerationFlow) -> None:
        self.flow = flow

    @property
    def cfg(self):
        return self.flow.config

    async def run(self, job: Job, ckpt: dict[str, Any], options: pb.GenerationOptions, character) -> str:
        f = self.flow
        ctx = await f._step(job, ckpt, "context", lambda: f._context(job, character))
        render = await f._step(job, ckpt, "render", lambda: self.render(job, ckpt, options, ctx, 0))
        score = await f._step(job, ckpt, "score", lambda: self.score(job, ctx, render, "render"))
        regen = await f._step(
            job, ckpt, "regenerate", lambda: self.regenerate(job, ckpt, options, ctx, render, score)
        )
        best_render = regen.get("render") or render
        best_score = regen.get("score") or score
        state = await f._step(job, ckpt, "state", lambda: self.state(job, best_render))
        record = await f._step(
            job, ckpt, "record", lambda: self.record(job, options, best_render, best_score, state)
        )
        return await self.succeed(job, ckpt, best_render, best_score, regen, state, record)

    # --- render ---------------------------------------------------------------------------------------------

    async def render(
        self, job: Job, ckpt: dict[str, Any], options: pb.GenerationOptions, ctx: Mapping[str, Any], n: int
    ) -> dict[str, Any]:
        tag = "render" if n == 0 else f"regen{n}"
        op_key = f"{tag}_operation"
        prefix = f"jobs/{job.id}/video" if n == 0 else f"jobs/{job.id}/video_{tag}"
        refs = [dict_to_msg(r, common_pb2.ImageRef()) for r in ctx.get("references", [])]
        req = render_service_pb2.RenderVideoRequest(
            prompt=ctx["prompt"],
            negative_prompt=ctx.get("negative_prompt", ""),
            references=refs[:MAX_VIDEO_REFERENCES],
            dialogue=options.dialogue,
            duration_s=options.video_duration_s or self.cfg.video_duration_s,
            aspect_ratio=options.aspect_ratio,
            seed=((options.seed or job_seed(job.id)) + n) % 2_147_483_647 or 1,
            providers=list(options.providers),
            job_id=job.id,
            character_id=job.character_id,
            operation_name=(ckpt.get(op_key) or {}).get("name", ""),
            output_prefix=f"{prefix}/",
            watermark=options.watermark,
        )
        if req.operation_name:
            log.info("job %s: resuming video operation %s", job.id, req.operation_name)
        watcher = asyncio.create_task(self._watch_operation(job, ckpt, op_key, prefix))
        try:
            resp = await self.flow.peers.render_video(req, timeout_s=self.cfg.video_timeout_s)
        except IdlockError as e:
            # an operation that ended in an error is not resumed by the retry (it starts a fresh one): the render
            # service drops its record of such an operation, and keeps it while the operation may still run
            watcher.cancel()
            objects = self.flow.objects
            if (
                not isinstance(e, DeadlineExceeded)
                and (ckpt.get(op_key) or {}).get("name")
                and objects is not None
                and not await objects.exists(f"{prefix}/video_operation.json")
            ):
                await self._save_operation(job, ckpt, op_key, "")
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if resp.operation_name and (ckpt.get(op_key) or {}).get("name") != resp.operation_name:
            await self._save_operation(job, ckpt, op_key, resp.operation_name)
        return {
            "video": msg_to_dict(resp.video),
            "provenance": msg_to_dict(resp.provenance),
            "operation_name": resp.operation_name,
            "polls": int(resp.polls),
        }

    async def _save_operation(self, job: Job, ckpt: dict[str, Any], key: str, name: str) -> None:
        f = self.flow
        if await f.store.save_checkpoint(job.id, f.worker_id, key, {"name": name}):
            ckpt[key] = {"name": name}
            if not name:  # forgotten: the operation ended in an error
                return
            await f.emit(
                "progress",
                f.event(job, common_pb2.JOB_STATUS_RUNNING, step="render", message=f"video operation {name}"),
                f"{job.id}:progress:{key}",
            )

    async def _watch_operation(self, job: Job, ckpt: dict[str, Any], key: str, prefix: str) -> None:
        """Copy the operation name the render service records (as soon as the provider accepted the job) into
        the job checkpoint, so it is stored before the operation is polled to the end."""
        objects = self.flow.objects
        if objects is None:
            return
        while True:
            try:
                record = json.loads(await objects.get(f"{prefix}/video_operation.json"))
                name = record.get("operation_name", "")
                if name and (ckpt.get(key) or {}).get("name") != name:
                    await self._save_operation(job, ckpt, key, name)
            except NotFound:
                pass
            except Exception as e:  # noqa: BLE001 - the response carries the name as well
                log.debug("job %s: reading the video operation record failed: %s", job.id, e)
            await asyncio.sleep(self.cfg.operation_watch_s)

    # --- score ----------------------------------------------------------------------------------------------

    async def _frames(
        self, video: common_pb2.VideoRef, selection: int, every_s: float, prefix: str
    ) -> identity_service_pb2.ExtractFramesResponse:
        return await self.flow.peers.extract_frames(
            identity_service_pb2.ExtractFramesRequest(
                video=video, selection=selection, every_s=every_s, output_prefix=prefix
            ),
            timeout_s=self.cfg.step_timeout_s,
        )

    async def score(
        self, job: Job, ctx: Mapping[str, Any], render: Mapping[str, Any], tag: str
    ) -> dict[str, Any]:
        """IDR on the first frame and on one frame every `video_frame_every_s` seconds: per frame, min, mean
        (a frame without the face counts 0)."""
        video = dict_to_msg(render["video"], common_pb2.VideoRef())
        identity = dict_to_msg(ctx.get("identity"), common_pb2.IdentityVector())
        base = f"jobs/{job.id}/frames/{tag}"
        first = await self._frames(video, identity_service_pb2.FRAME_SELECTION_FIRST, 0.0, f"{base}/first/")
        every = await self._frames(
            video,
            identity_service_pb2.FRAME_SELECTION_EVERY_N_SECONDS,
            self.cfg.video_frame_every_s,
            f"{base}/every/",
        )
        frames = list(first.frames) + [
            fr for fr in every.frames if fr.index not in {x.index for x in first.frames}
        ]
        out: dict[str, Any] = {
            "duration_s": float(every.duration_s or first.duration_s or video.duration_s),
            "fps": float(every.fps or first.fps or video.fps),
        }
        if first.frames:
            out["first_frame"] = msg_to_dict(first.frames[0].image)
        if not identity.values:
            out.update(
                face_found=False, frames=[], frames_scored=0, note="the character has no identity vector"
            )
            return out
        scored: list[common_pb2.FrameIdr] = []
        for i, fr in enumerate(frames):
            resp = await self.flow.peers.score_identity(
                job.character_id, identity, fr.image, timeout_s=self.cfg.step_timeout_s
            )
            match = next((m for m in resp.matches if m.character_id == job.character_id), None)
            item = common_pb2.FrameIdr(
                timestamp_s=fr.timestamp_s, face_found=bool(match and match.face_found)
            )
            if match is not None and match.face_found:
                item.score.CopyFrom(match.score)
                if i == 0:
                    out["idr"] = msg_to_dict(match.score)
                    if match.face_embedding.values:
                        out["embedding"] = msg_to_dict(match.face_embedding)
            scored.append(item)
        values = [x.score.calibrated if x.face_found else 0.0 for x in scored]
        out.update(
            face_found=bool(scored and scored[0].face_found),
            frames=[msg_to_dict(x) for x in scored],
            frames_scored=len(scored),
            frame_idr_min=min(values) if values else 0.0,
            frame_idr_mean=sum(values) / len(values) if values else 0.0,
        )
        if not out["face_found"]:
            out["note"] = "no face found in the first frame"
        return out

    # --- regenerate gate --------------------------------------------------------------------------------------

    def _below(self, score: Mapping[str, Any]) -> bool:
        if not score.get("frames_scored"):
            return False  # nothing to judge (no identity vector)
        return (
            not score.get("face_found") or float(score.get("frame_idr_min", 0.0)) < self.cfg.refine_threshold
        )

    async def regenerate(
        self,
        job: Job,
        ckpt: dict[str, Any],
        options: pb.GenerationOptions,
        ctx: Mapping[str, Any],
        render: Mapping[str, Any],
        score: Mapping[str, Any],
    ) -> dict[str, Any]:
        needed = self._below(score)
        out: dict[str, Any] = {"needed": needed, "regenerated": False, "attempts": 0, "extra_cost_usd": 0.0}
        if not needed:
            return out
        best: tuple[Mapping[str, Any], Mapping[str, Any]] = (render, score)
        for n in range(1, self.cfg.video_regenerations + 1):
            r2 = await self.render(job, ckpt, options, ctx, n)
            s2 = await self.score(job, ctx, r2, f"regen{n}")
            out["attempts"] = n
            out["extra_cost_usd"] += float((r2.get("provenance") or {}).get("estimated_cost_usd", 0.0))
            out["regenerated"] = True
            if _quality(s2) > _quality(best[1]):
                best = (r2, s2)
            if not self._below(best[1]):
                break
        if best[0] is not render:
            out["render"], out["score"] = dict(best[0]), dict(best[1])
            out["note"] = f"regenerated: kept the new video (frame IDR min {_quality(best[1])[0]:.3f})"
        else:
            out["note"] = "regenerated: the first video was better and was kept"
        return out

    # --- state + record ---------------------------------------------------------------------------------------

    async def state(self, job: Job, render: Mapping[str, Any]) -> dict[str, Any]:
        """State from the last frame (vision when configured; the labelled heuristic reads the prompt)."""
        f = self.flow
        video = dict_to_msg(render["video"], common_pb2.VideoRef())
        last = await self._frames(
            video, identity_service_pb2.FRAME_SELECTION_LAST, 0.0, f"jobs/{job.id}/frames/last/"
        )
        image_bytes: bytes | None = None
        last_ref = last.frames[-1].image if last.frames else None
        if f.extractor.uses_vision and f.objects is not None and last_ref is not None:
            image_bytes = await f.objects.get(last_ref.uri)
        st = await f.extractor.extract(user_prompt=job.prompt, image=image_bytes, mime="image/png")
        out = {
            "added": st.added,
            "removed": st.removed,
            "description": st.description,
            "source": st.source,
            "fallback_reason": st.fallback_reason,
        }
        if last_ref is not None:
            out["last_frame"] = msg_to_dict(last_ref)
        return out

    async def record(
        self,
        job: Job,
        options: pb.GenerationOptions,
        render: Mapping[str, Any],
        score: Mapping[str, Any],
        state: Mapping[str, Any],
    ) -> dict[str, Any]:
        video = dict_to_msg(render["video"], common_pb2.VideoRef())
        episode = scene_episode(job, common_pb2.MEDIA_KIND_VIDEO, score, state)
        episode.video.CopyFrom(video)
        episode.duration_s = float(score.get("duration_s") or video.duration_s)
        episode.dialogue = options.dialogue
        episode.frame_idrs.extend(dict_to_msg(x, common_pb2.FrameIdr()) for x in score.get("frames", []))
        if score.get("first_frame"):
            episode.image.CopyFrom(dict_to_msg(score["first_frame"], common_pb2.ImageRef()))
        return await self.flow.record_episode(episode)

    # --- ending -----------------------------------------------------------------------------------------------

    def metrics(self, job, ckpt, render, score, regen, state, record) -> pb.JobMetrics:
        refine = {"needed": bool(regen.get("needed")), "refined": False, "note": regen.get("note", "")}
        m = self.flow.metrics(job, ckpt, render, score, refine, state, record)
        if "regenerate" in ckpt:
            m.step_seconds["regenerate"] = float(ckpt["regenerate"].get("seconds", 0.0))
            m.step_model_seconds["regenerate"] = step_model_seconds("regenerate", ckpt["regenerate"])
        m.video_duration_s = float(score.get("duration_s", 0.0))
        m.frames_scored = int(score.get("frames_scored", 0))
        m.frame_idr_min = float(score.get("frame_idr_min", 0.0))
        m.frame_idr_mean = float(score.get("frame_idr_mean", 0.0))
        m.regenerated = bool(regen.get("regenerated"))
        m.frame_idrs.extend(dict_to_msg(x, common_pb2.FrameIdr()) for x in score.get("frames", []))
        m.estimated_cost_usd += float(regen.get("extra_cost_usd", 0.0))
        return m

    async def succeed(self, job, ckpt, render, score, regen, state, record) -> str:
        f = self.flow
        metrics = self.metrics(job, ckpt, render, score, regen, state, record)
        video = dict_to_msg(render["video"], common_pb2.VideoRef())
        poster = dict_to_msg(score.get("first_frame"), common_pb2.ImageRef())
        ckpt["result_video"] = msg_to_dict(video)  # stored with the job's end
        msg = "video episode recorded" + (", memory consolidated" if record.get("consolidated") else "")
        if not await f.finish_success(job, poster, metrics, msg, ckpt):
            return "cancelled"
        log.info(
            "job %s (video) succeeded in %.2f s (scene %d, frame IDR min %.3f mean %.3f)",
            job.id,
            metrics.total_seconds,
            metrics.scene_index,
            metrics.frame_idr_min,
            metrics.frame_idr_mean,
        )
        return SUCCEEDED


__all__ = ["VIDEO_STEPS", "VideoSteps"]
