"""Local diffusers renderer: the shared pipeline (`idlock.diffusion`) behind the render contract, with
img2img/inpaint edits. The settings are IDLOCK_RENDER_DIFFUSERS_*.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from idlock.diffusion import DiffusionConfig, DiffusionPipeline
from idlock.errors import Unavailable
from services.render.models import EditRequest, RenderRequest, RenderResult
from services.render.providers.base import RenderProvider, decode_image, encode_png, pick_seed

log = logging.getLogger("idlock.render.diffusers")


def pipeline_config(settings) -> DiffusionConfig:
    return DiffusionConfig(
        model_path=str(settings.diffusers_model_path or ""),
        device=settings.diffusers_device,
        steps=settings.diffusers_steps,
        guidance=settings.diffusers_guidance,
        default_size=settings.diffusers_default_size,
        model_path_setting="IDLOCK_RENDER_DIFFUSERS_MODEL_PATH",
    )


class DiffusersProvider(RenderProvider):
    name = "diffusers"

    def __init__(self, settings) -> None:
        self.settings = settings
        self.pipeline = DiffusionPipeline(pipeline_config(settings))

    @property
    def model(self) -> str:
        return self.pipeline.model

    def unavailable_reason(self) -> str | None:
        return self.pipeline.unavailable_reason()

    async def render(self, req: RenderRequest) -> RenderResult:
        return await asyncio.to_thread(self.render_sync, req)

    async def edit(self, req: EditRequest) -> RenderResult:
        return await asyncio.to_thread(self.edit_sync, req)

    def render_sync(self, req: RenderRequest) -> RenderResult:
        import torch

        req.validate()
        t0 = time.perf_counter()
        side = self.settings.diffusers_default_size
        notes: list[str] = []
        if req.references:
            notes.append("reference images not used by diffusers (no IP-Adapter configured); use a LoRA")
        if req.pose_image:
            notes.append("pose image not used by diffusers (no ControlNet configured)")
        seed = pick_seed(req.seed)
        p = self.pipeline
        with p.lock:
            pipe = p.load()
            width, height = p.fit(*req.size(side, side))
            p.apply_lora(req.lora_path, req.lora_scale)
            gen = p.generator(seed)
            try:
                out = pipe(
                    prompt=req.prompt,
                    negative_prompt=req.negative_prompt or None,
                    width=width,
                    height=height,
                    num_inference_steps=self.settings.diffusers_steps,
                    guidance_scale=self.settings.diffusers_guidance,
                    generator=gen,
                    output_type="pil",
                )
            except torch.cuda.OutOfMemoryError as e:  # type: ignore[attr-defined]
                raise Unavailable(f"diffusers: out of GPU memory at {width}x{height}: {e}") from e
            image = out.images[0]
        return RenderResult(
            image=encode_png(image),
            provider=self.name,
            model=self.model,
            seed=seed,
            width=image.width,
            height=image.height,
            latency_s=time.perf_counter() - t0,
            label=f"diffusers/{self.model}"
            + (f"+lora:{Path(req.lora_path).name}@{req.lora_scale:g}" if req.lora_path else ""),
            notes=notes,
        )

    def edit_sync(self, req: EditRequest) -> RenderResult:
        req.validate()
        t0 = time.perf_counter()
        src = decode_image(req.image, "image to edit")
        mask = decode_image(req.mask, "mask", mode="L") if req.mask else None
        seed = pick_seed(req.seed)
        notes = ["reference images not used by diffusers edits"] if req.references else []
        p = self.pipeline
        with p.lock:
            p.load()
            width, height = p.fit(src.width, src.height)
            src_r = src.resize((width, height))
            pipe = p.edit_pipe(inpaint=mask is not None)
            p.apply_lora(req.lora_path, req.lora_scale)
            gen = p.generator(seed)
            kwargs = {
                "prompt": req.prompt,
                "negative_prompt": req.negative_prompt or None,
                "image": src_r,
                "strength": req.strength,
                "num_inference_steps": max(self.settings.diffusers_steps, int(1 / req.strength) + 1),
                "guidance_scale": self.settings.diffusers_guidance,
                "generator": gen,
                "output_type": "pil",
            }
            if mask is not None:
                kwargs.update(mask_image=mask.resize((width, height)), width=width, height=height)
            out = pipe(**kwargs)
            image = out.images[0]
        return RenderResult(
            image=encode_png(image),
            provider=self.name,
            model=self.model,
            seed=seed,
            width=image.width,
            height=image.height,
            latency_s=time.perf_counter() - t0,
            label=f"diffusers/{self.model}:{'inpaint' if mask is not None else 'img2img'}",
            notes=notes,
        )

    async def aclose(self) -> None:
        self.pipeline.close()
