"""Local diffusers renderer: SD 1.5 / SDXL from a mounted model folder, optional LoRA (peft), img2img/inpaint edits.

CUDA (fp16) when present, else CPU (fp32). Seeds are deterministic: a CPU torch.Generator seeded per call.
Nothing is downloaded: the pipeline loads with local_files_only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path

from idlock.errors import InvalidInput, NotFound, Unavailable
from services.render.models import EditRequest, RenderRequest, RenderResult
from services.render.providers.base import RenderProvider, decode_image, encode_png, pick_seed

log = logging.getLogger("idlock.render.diffusers")

#: LoRA adapters kept loaded at once (per-character LoRAs come and go; the oldest is unloaded)
MAX_LOADED_ADAPTERS = 8


class DiffusersProvider(RenderProvider):
    name = "diffusers"

    def __init__(self, settings) -> None:
        self.settings = settings
        self._pipe = None
        self._img2img = None
        self._inpaint = None
        self._device = "cpu"
        self._dtype = None
        self._is_xl = False
        self._lock = threading.Lock()  # one generation at a time per pipeline
        self._adapters: dict[str, str] = {}  # lora file path -> adapter name
        self.model = Path(settings.diffusers_model_path).name if settings.diffusers_model_path else ""

    # -- availability ---------------------------------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        path = self.settings.diffusers_model_path
        if not path:
            return "no model path (IDLOCK_RENDER_DIFFUSERS_MODEL_PATH is empty)"
        p = Path(path)
        if not (p / "model_index.json").is_file():
            return f"model path {p} has no model_index.json (not a diffusers pipeline folder)"
        try:
            import diffusers  # noqa: F401
            import torch  # noqa: F401
        except ImportError as e:
            return f"diffusers/torch not installed: {e}"
        return None

    # -- loading --------------------------------------------------------------------------------------------------
    def _load(self):
        if self._pipe is not None:
            return self._pipe
        why = self.unavailable_reason()
        if why:
            raise Unavailable(f"diffusers: {why}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from diffusers import AutoPipelineForText2Image

        want = self.settings.diffusers_device
        cuda = torch.cuda.is_available()
        if want == "cuda" and not cuda:
            raise Unavailable("diffusers: IDLOCK_RENDER_DIFFUSERS_DEVICE=cuda but no CUDA device is present")
        self._device = "cuda" if (want == "cuda" or (want == "auto" and cuda)) else "cpu"
        self._dtype = torch.float16 if self._device == "cuda" else torch.float32
        path = Path(self.settings.diffusers_model_path)
        index = json.loads((path / "model_index.json").read_text())
        self._is_xl = "XL" in index.get("_class_name", "")
        t0 = time.perf_counter()
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(
                str(path), dtype=self._dtype, local_files_only=True
            )
        except Exception as e:
            raise Unavailable(
                f"diffusers: cannot load the pipeline from {path}: {type(e).__name__}: {e}"
            ) from e
        pipe = pipe.to(self._device)
        pipe.set_progress_bar_config(disable=True)
        self._pipe = pipe
        self.model = f"{index.get('_class_name', 'pipeline')}:{path.name}"
        log.info(
            "diffusers pipeline %s loaded on %s in %.1fs", self.model, self._device, time.perf_counter() - t0
        )
        return pipe

    def _edit_pipe(self, inpaint: bool):
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

        base = self._load()
        if inpaint:
            if self._inpaint is None:
                self._inpaint = AutoPipelineForInpainting.from_pipe(base)
                self._inpaint.set_progress_bar_config(disable=True)
            return self._inpaint
        if self._img2img is None:
            self._img2img = AutoPipelineForImage2Image.from_pipe(base)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    def _apply_lora(self, lora_path: str | None, scale: float) -> None:
        """Activate one LoRA adapter (loaded once, cached) at `scale`, or none."""
        pipe = self._pipe
        if not lora_path:
            if self._adapters:
                pipe.disable_lora()
            return
        p = Path(lora_path)
        if not p.exists():
            raise NotFound(f"LoRA adapter not found: {lora_path}")
        if p.is_dir() and (p / "pytorch_lora_weights.safetensors").is_file():
            p = p / "pytorch_lora_weights.safetensors"
        key = str(p.resolve())
        if key not in self._adapters:
            if len(self._adapters) >= MAX_LOADED_ADAPTERS:  # forget the oldest adapter
                old_key = next(iter(self._adapters))
                try:
                    pipe.delete_adapters(self._adapters.pop(old_key))
                except Exception:  # noqa: BLE001
                    log.warning("could not unload LoRA adapter %s", old_key)
            name = "lora_" + hashlib.sha1(key.encode()).hexdigest()[:12]
            try:
                if p.is_dir():
                    pipe.load_lora_weights(str(p), adapter_name=name)
                else:
                    pipe.load_lora_weights(str(p.parent), weight_name=p.name, adapter_name=name)
            except Exception as e:
                with contextlib.suppress(Exception):  # a half-loaded adapter
                    pipe.delete_adapters(name)
                raise InvalidInput(
                    f"LoRA adapter {lora_path} cannot be loaded: {type(e).__name__}: {e}"
                ) from e
            self._adapters[key] = name
        pipe.enable_lora()
        pipe.set_adapters([self._adapters[key]], adapter_weights=[scale])

    # -- rendering ------------------------------------------------------------------------------------------------
    def _size(self, w: int, h: int) -> tuple[int, int]:
        f = getattr(self._pipe, "vae_scale_factor", 8) or 8
        return max(f, w // f * f), max(f, h // f * f)

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
        with self._lock:
            pipe = self._load()
            width, height = self._size(*req.size(side, side))
            self._apply_lora(req.lora_path, req.lora_scale)
            gen = torch.Generator(device="cpu").manual_seed(seed)
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
        import torch

        req.validate()
        t0 = time.perf_counter()
        src = decode_image(req.image, "image to edit")
        mask = decode_image(req.mask, "mask", mode="L") if req.mask else None
        seed = pick_seed(req.seed)
        notes = ["reference images not used by diffusers edits"] if req.references else []
        with self._lock:
            self._load()
            width, height = self._size(src.width, src.height)
            src_r = src.resize((width, height))
            pipe = self._edit_pipe(inpaint=mask is not None)
            self._apply_lora(req.lora_path, req.lora_scale)
            gen = torch.Generator(device="cpu").manual_seed(seed)
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
        self._pipe = self._img2img = self._inpaint = None
