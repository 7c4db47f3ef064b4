"""A local diffusers pipeline (SD 1.5 / SDXL from a mounted model folder) with cached LoRA adapters (peft): the
render service serves it, the trainer validates a new LoRA with it before activation.

CUDA (fp16) when present, else CPU (fp32). Seeds are deterministic: a CPU torch.Generator seeded per call.
Nothing is downloaded: the pipeline loads with local_files_only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idlock.errors import InvalidInput, NotFound, Unavailable

log = logging.getLogger("idlock.diffusion")

#: LoRA adapters kept loaded at once (per-character LoRAs come and go; the oldest is unloaded)
MAX_LOADED_ADAPTERS = 8


@dataclass(frozen=True)
class DiffusionConfig:
    model_path: str = ""
    #: "auto" (CUDA when present), "cuda" or "cpu"
    device: str = "auto"
    steps: int = 25
    guidance: float = 7.0
    default_size: int = 512
    #: the setting that names the model path, for messages
    model_path_setting: str = "model path"


class DiffusionPipeline:
    """One text-to-image pipeline (and its img2img / inpaint variants), one generation at a time."""

    def __init__(self, config: DiffusionConfig) -> None:
        self.config = config
        self._pipe: Any = None
        self._img2img: Any = None
        self._inpaint: Any = None
        self._device = "cpu"
        self._dtype = None
        self.lock = threading.Lock()
        self._adapters: dict[str, str] = {}  # lora file path -> adapter name
        self.model = Path(config.model_path).name if config.model_path else ""

    def unavailable_reason(self) -> str | None:
        path = self.config.model_path
        if not path:
            return f"no model path ({self.config.model_path_setting} is empty)"
        p = Path(path)
        if not (p / "model_index.json").is_file():
            return f"model path {p} has no model_index.json (not a diffusers pipeline folder)"
        try:
            import diffusers  # noqa: F401
            import torch  # noqa: F401
        except ImportError as e:
            return f"diffusers/torch not installed: {e}"
        return None

    def load(self):
        if self._pipe is not None:
            return self._pipe
        why = self.unavailable_reason()
        if why:
            raise Unavailable(f"diffusers: {why}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from diffusers import AutoPipelineForText2Image

        want = self.config.device
        cuda = torch.cuda.is_available()
        if want == "cuda" and not cuda:
            raise Unavailable("diffusers: the device is cuda but no CUDA device is present")
        self._device = "cuda" if (want == "cuda" or (want == "auto" and cuda)) else "cpu"
        self._dtype = torch.float16 if self._device == "cuda" else torch.float32
        path = Path(self.config.model_path)
        index = json.loads((path / "model_index.json").read_text())
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

    def edit_pipe(self, inpaint: bool):
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

        base = self.load()
        if inpaint:
            if self._inpaint is None:
                self._inpaint = AutoPipelineForInpainting.from_pipe(base)
                self._inpaint.set_progress_bar_config(disable=True)
            return self._inpaint
        if self._img2img is None:
            self._img2img = AutoPipelineForImage2Image.from_pipe(base)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    def apply_lora(self, lora_path: str | None, scale: float) -> None:
        """Activate one LoRA adapter (loaded once, cached) at `scale`, or none."""
        pipe = self._pipe
        if not lora_path:
            if self._adapters:
                pipe.disable_lora()
            return
        if not Path(lora_path).exists():
            raise NotFound(f"LoRA adapter not found: {lora_path}")
        p = _weights_file(lora_path)
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

    def forget_lora(self, lora_path: str) -> bool:
        """Unload the adapter loaded from `lora_path` (waits for a generation under way); False: none was."""
        key = str(_weights_file(lora_path).resolve())
        with self.lock:
            name = self._adapters.pop(key, None)
            if name is None:
                return False
            try:
                self._pipe.delete_adapters(name)
            except Exception:  # noqa: BLE001 - left loaded; no path leads to it any more
                log.warning("could not unload LoRA adapter %s", lora_path)
            return True

    def fit(self, w: int, h: int) -> tuple[int, int]:
        f = getattr(self._pipe, "vae_scale_factor", 8) or 8
        return max(f, w // f * f), max(f, h // f * f)

    def generator(self, seed: int):
        import torch

        return torch.Generator(device="cpu").manual_seed(seed)

    def close(self) -> None:
        self._pipe = self._img2img = self._inpaint = None


def _weights_file(lora_path: str) -> Path:
    """The weights file a LoRA path names: the file itself, or a diffusers LoRA folder's weights."""
    p = Path(lora_path)
    if p.is_dir() and (p / "pytorch_lora_weights.safetensors").is_file():
        return p / "pytorch_lora_weights.safetensors"
    return p


__all__ = ["MAX_LOADED_ADAPTERS", "DiffusionConfig", "DiffusionPipeline"]
