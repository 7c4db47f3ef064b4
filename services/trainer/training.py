"""LoRA training on a diffusers UNet (SD 1.5 or SDXL) with peft.

Design choices (the GPU bench `bench/train_lora.py` measures them against a plain loop):
- VAE latents and text embeddings are computed once before the loop and cached; the VAE and text encoder(s) are
  then dropped, so the loop holds only the UNet.
- On CUDA the frozen UNet runs in bf16 (LoRA weights and the optimizer in fp32), SDPA attention and gradient
  checkpointing.
- LoRA on the attention projections (to_q, to_k, to_v, to_out.0), AdamW.
- A resumable checkpoint (LoRA weights, optimizer, step, losses) every `checkpoint_every` steps, written
  atomically; the noise and timesteps of step i come from a generator seeded by (seed, i), so a resumed run
  continues exactly where the crashed one left off.
- Export: `pytorch_lora_weights.safetensors` in the diffusers layout, loadable by `pipe.load_lora_weights`.

Everything here is synchronous (run it in a thread); `on_progress` is called every step.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idlock.errors import InvalidInput, PreconditionFailed, Unavailable
from idlock.files import replace_whole

log = logging.getLogger("idlock.trainer.training")

TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
LORA_FILE = "pytorch_lora_weights.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainConfig:
    rank: int = 32
    learning_rate: float = 1e-4
    steps: int = 800
    batch_size: int = 2
    checkpoint_every: int = 100
    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda
    #: training side in pixels; 0: the dataset images' own size (they are square, built by the dataset builder)
    resolution: int = 0
    #: bf16 + SDPA + gradient checkpointing on CUDA (the bench turns them off for the reference loop)
    optimized: bool = True
    #: cache VAE latents and text embeddings once (the bench's reference loop recomputes them every step)
    cache: bool = True
    #: images evaluated for the fixed-noise evaluation loss before and after training
    eval_images: int = 4
    #: LoRA weights exported at this many evenly spaced steps (the last one included), for validation to choose
    snapshots: int = 1

    def validate(self) -> None:
        if not 1 <= self.rank <= 256:
            raise InvalidInput(f"rank must be between 1 and 256, got {self.rank}")
        if self.steps < 1:
            raise InvalidInput(f"steps must be >= 1, got {self.steps}")
        if not 1 <= self.batch_size <= 64:
            raise InvalidInput(f"batch_size must be between 1 and 64, got {self.batch_size}")
        if not (0 < self.learning_rate <= 1):
            raise InvalidInput(f"learning_rate must be in (0, 1], got {self.learning_rate}")
        if self.checkpoint_every < 1:
            raise InvalidInput(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if not 1 <= self.snapshots <= min(8, self.steps):
            raise InvalidInput(f"snapshots must be between 1 and min(8, steps), got {self.snapshots}")

    def snapshot_steps(self) -> list[int]:
        """The steps whose LoRA weights are exported: evenly spaced, ending at the last."""
        return sorted({max(1, round(self.steps * k / self.snapshots)) for k in range(1, self.snapshots + 1)})


@dataclass
class Progress:
    step: int
    total_steps: int
    loss: float
    eta_s: float


@dataclass
class TrainResult:
    lora_path: Path
    steps: int
    resumed_from: int
    losses: list[float]
    eval_loss_before: float
    eval_loss_after: float
    seconds: float
    images: int
    is_xl: bool
    #: the trained UNet (peft adapter attached) when `keep_model` was asked; None otherwise
    unet: Any = field(default=None, repr=False)
    #: cached conditioning of the first caption (tests compare the exported LoRA with the trained UNet)
    sample_condition: dict[str, Any] = field(default_factory=dict, repr=False)
    #: step -> exported LoRA weights, for each of `TrainConfig.snapshots` (the last is `lora_path`)
    snapshots: dict[int, Path] = field(default_factory=dict)


class TrainingInterrupted(Exception):
    """Raised from `on_progress` to stop a run (tests simulate a crash with it); the checkpoint survives."""


def resolve_device(want: str) -> str:
    import torch

    cuda = torch.cuda.is_available()
    if want == "cuda" and not cuda:
        raise Unavailable("training device cuda was asked for but no CUDA device is present")
    return "cuda" if (want == "cuda" or (want == "auto" and cuda)) else "cpu"


def _is_xl(model_path: Path) -> bool:
    try:
        index = json.loads((Path(model_path) / "model_index.json").read_text())
    except (OSError, ValueError) as e:
        raise PreconditionFailed(f"base model {model_path} has no readable model_index.json: {e}") from e
    return "XL" in index.get("_class_name", "")


def load_pipeline(model_path: Path, dtype=None):
    """The base pipeline from a local folder (never downloads)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from diffusers import DiffusionPipeline

    if not (Path(model_path) / "model_index.json").is_file():
        raise PreconditionFailed(f"base model path {model_path} is not a diffusers pipeline folder")
    try:
        pipe = DiffusionPipeline.from_pretrained(
            str(model_path), dtype=dtype or torch.float32, local_files_only=True
        )
    except Exception as e:
        raise Unavailable(f"cannot load the base model from {model_path}: {type(e).__name__}: {e}") from e
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images_to_tensor(images: Sequence[bytes], resolution: int):
    import numpy as np
    import torch
    from PIL import Image

    out = []
    for data in images:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        if img.size != (resolution, resolution):
            img = img.resize((resolution, resolution), Image.BICUBIC)
        arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
        out.append(torch.from_numpy(arr).permute(2, 0, 1))
    return torch.stack(out)


def _encode_text(pipe, captions: Sequence[str], device: str, is_xl: bool) -> list[dict[str, Any]]:
    """Per caption: the UNet conditioning (prompt embeddings; plus pooled embeddings for SDXL)."""
    import torch

    out = []
    with torch.no_grad():
        for caption in captions:
            if is_xl:
                pe, _, pooled, _ = pipe.encode_prompt(
                    caption, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
                )
                out.append({"prompt_embeds": pe[0].float().cpu(), "pooled": pooled[0].float().cpu()})
            else:
                pe, _ = pipe.encode_prompt(
                    caption, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
                )
                out.append({"prompt_embeds": pe[0].float().cpu()})
    return out


def _encode_latents(vae, pixels, device: str, dtype) -> Any:
    import torch

    with torch.no_grad():
        lat = vae.encode(pixels.to(device, dtype=vae.dtype)).latent_dist.mean
        return (lat * vae.config.scaling_factor).to(dtype)


class _Conditioner:
    """Builds the UNet's keyword arguments for a batch of caption conditionings."""

    def __init__(self, is_xl: bool, resolution: int) -> None:
        self.is_xl = is_xl
        self.resolution = resolution

    def __call__(self, conds: Sequence[dict[str, Any]], device: str, dtype) -> dict[str, Any]:
        import torch

        kw: dict[str, Any] = {
            "encoder_hidden_states": torch.stack([c["prompt_embeds"] for c in conds]).to(device, dtype)
        }
        if self.is_xl:
            r = self.resolution
            time_ids = torch.tensor([[r, r, 0, 0, r, r]] * len(conds), device=device, dtype=dtype)
            kw["added_cond_kwargs"] = {
                "text_embeds": torch.stack([c["pooled"] for c in conds]).to(device, dtype),
                "time_ids": time_ids,
            }
        return kw


def _step_generator(seed: int, step: int):
    import torch

    return torch.Generator(device="cpu").manual_seed((seed * 1_000_003 + step) % (2**63 - 1))


def _lora_params(unet) -> list:
    return [p for n, p in unet.named_parameters() if "lora_" in n]


def _save_checkpoint(
    path: Path, unet, optimizer, step: int, losses: list[float], fingerprint: str, eval_before: float
) -> None:
    import torch
    from peft.utils import get_peft_model_state_dict

    state = {
        "step": step,
        "losses": losses,
        "fingerprint": fingerprint,
        "eval_before": eval_before,
        "lora": {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(unet).items()},
        "optimizer": optimizer.state_dict(),
    }
    # a crash mid-save leaves the last checkpoint readable
    replace_whole(path, lambda f: torch.save(state, f))


def _load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    import torch

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a torn file: start over
        log.warning("checkpoint %s unreadable (%s); starting from step 0", path, e)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("checkpoint %s belongs to another configuration; starting from step 0", path)
        return None
    return state


def export_lora(unet, out_dir: Path, is_xl: bool) -> Path:
    """Write the adapter as diffusers-layout safetensors (`load_lora_weights` loads it)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    state = convert_state_dict_to_diffusers(state)
    cls = StableDiffusionXLPipeline if is_xl else StableDiffusionPipeline
    cls.save_lora_weights(str(out_dir), unet_lora_layers=state, safe_serialization=True)
    return out_dir / LORA_FILE


def train_lora(
    model_path: Path | str,
    images: Sequence[bytes],
    captions: Sequence[str],
    out_dir: Path | str,
    config: TrainConfig,
    *,
    checkpoint_dir: Path | str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    keep_model: bool = False,
    pipe=None,
) -> TrainResult:
    """Train a LoRA on `images` (encoded bytes) with their `captions`; export it to `out_dir`.

    A checkpoint in `checkpoint_dir` from an interrupted run of the same configuration is resumed."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from peft import LoraConfig, set_peft_model_state_dict

    config.validate()
    if not images:
        raise InvalidInput("the dataset has no images")
    if len(images) != len(captions):
        raise InvalidInput(f"{len(images)} images but {len(captions)} captions")
    model_path = Path(model_path)
    out_dir = Path(out_dir)
    ckpt_path = Path(checkpoint_dir or out_dir / "checkpoints") / CHECKPOINT_FILE
    t_start = time.perf_counter()
    device = resolve_device(config.device)
    is_xl = _is_xl(model_path) if pipe is None else "XL" in type(pipe).__name__
    fast = config.optimized and device == "cuda"
    weight_dtype = torch.bfloat16 if fast else torch.float32

    pipe = pipe or load_pipeline(model_path)
    unet, vae = pipe.unet, pipe.vae
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    resolution = config.resolution or _first_size(images[0])
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if resolution % factor:
        raise InvalidInput(f"resolution {resolution} is not a multiple of the VAE factor {factor}")

    # --- caches: latents and text embeddings, once ---------------------------------------------------------
    vae.requires_grad_(False)
    for enc in ("text_encoder", "text_encoder_2"):
        if getattr(pipe, enc, None) is not None:
            getattr(pipe, enc).requires_grad_(False).to(device)
    vae.to(device)
    pixels = _images_to_tensor(images, resolution)
    unique = sorted(set(captions))
    cond_by_caption = dict(zip(unique, _encode_text(pipe, unique, device, is_xl)))
    conds = [cond_by_caption[c] for c in captions]
    latents = torch.cat(
        [
            _encode_latents(vae, pixels[i : i + 8], device, torch.float32).cpu()
            for i in range(0, len(pixels), 8)
        ]
    )
    if config.cache:
        # the loop needs only the UNet: free the VAE and text encoders' device memory
        vae.to("cpu")
        for enc in ("text_encoder", "text_encoder_2"):
            if getattr(pipe, enc, None) is not None:
                getattr(pipe, enc).to("cpu")
        if device == "cuda":
            torch.cuda.empty_cache()
    conditioner = _Conditioner(is_xl, resolution)

    # --- the UNet with a LoRA adapter -----------------------------------------------------------------------
    unet.requires_grad_(False)
    unet.to(device, dtype=weight_dtype)
    torch.manual_seed(config.seed)
    unet.add_adapter(
        LoraConfig(
            r=config.rank,
            lora_alpha=config.rank,
            init_lora_weights="gaussian",
            target_modules=TARGET_MODULES,
        )
    )
    params = _lora_params(unet)
    for p in params:
        p.data = p.data.float()  # trainable weights in fp32 even when the frozen UNet is bf16
    if fast:
        from diffusers.models.attention_processor import AttnProcessor2_0

        unet.set_attn_processor(AttnProcessor2_0())
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=1e-2)
    fingerprint = json.dumps(
        {
            "rank": config.rank,
            "lr": config.learning_rate,
            "steps": config.steps,
            "batch": config.batch_size,
            "seed": config.seed,
            "resolution": resolution,
            "images": len(images),
            "captions": captions and sorted(set(captions)),
        },
        sort_keys=True,
    )

    def unet_loss(step_seed: int, idx: list[int]) -> Any:
        gen = _step_generator(config.seed, step_seed)
        lat = latents[idx].to(device, torch.float32)
        noise = torch.randn(lat.shape, generator=gen).to(device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(idx),), generator=gen).to(
            device
        )
        noisy = noise_scheduler.add_noise(lat, noise, t)
        if noise_scheduler.config.prediction_type == "v_prediction":
            target = noise_scheduler.get_velocity(lat, noise, t)
        else:
            target = noise
        kw = conditioner([conds[i] for i in idx], device, weight_dtype)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=fast):
            pred = unet(noisy.to(weight_dtype), t, **kw).sample
        return F.mse_loss(pred.float(), target.float())

    def eval_loss() -> float:
        n = min(config.eval_images, len(images))
        with torch.no_grad():
            return float(sum(unet_loss(-1 - k, [k]).item() for k in range(n)) / n)

    # --- resume ---------------------------------------------------------------------------------------------
    start, losses = 0, []
    state = _load_checkpoint(ckpt_path, fingerprint)
    if state is not None:
        set_peft_model_state_dict(unet, {k: v.to(device) for k, v in state["lora"].items()})
        for p in params:
            p.data = p.data.float()
        optimizer.load_state_dict(state["optimizer"])
        start, losses = int(state["step"]), list(state["losses"])
        log.info("resuming LoRA training from step %d (%s)", start, ckpt_path)
    eval_before = float(state.get("eval_before")) if state and "eval_before" in state else eval_loss()

    # --- the loop -------------------------------------------------------------------------------------------
    unet.train()
    t_loop = time.perf_counter()
    n = len(images)
    snapshot_at = set(config.snapshot_steps())
    for step in range(start, config.steps):
        first = step * config.batch_size
        order = torch.randperm(
            n, generator=_step_generator(config.seed + 7, first // n)
        )  # one shuffle per epoch
        idx = [int(order[(first + j) % n]) for j in range(min(config.batch_size, n))]
        if not config.cache:
            # the reference loop: encode the images and captions again every step
            with torch.no_grad():
                vae_lat = _encode_latents(vae, pixels[idx], device, torch.float32)
                _encode_text(pipe, [captions[i] for i in idx], device, is_xl)
                latents[idx] = vae_lat.cpu()
        loss = unet_loss(step, idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        value = float(loss.detach().item())
        if not math.isfinite(value):
            raise PreconditionFailed(f"training diverged at step {step + 1} (loss {value})")
        losses.append(value)
        done = step + 1
        if done in snapshot_at and done < config.steps:  # before the checkpoint: a resume finds it exported
            export_lora(unet, out_dir / f"step_{done:06d}", is_xl)
        if done % config.checkpoint_every == 0 and done < config.steps:
            _save_checkpoint(ckpt_path, unet, optimizer, done, losses, fingerprint, eval_before)
        if on_progress is not None:
            rate = (time.perf_counter() - t_loop) / max(1, done - start)
            on_progress(Progress(done, config.steps, value, rate * (config.steps - done)))
    unet.eval()
    eval_after = eval_loss()
    lora_path = export_lora(unet, out_dir, is_xl)
    ckpt_path.unlink(missing_ok=True)
    snapshots = {config.steps: lora_path}
    for step in snapshot_at - {config.steps}:
        exported = out_dir / f"step_{step:06d}" / LORA_FILE
        if exported.is_file():  # exported before a crash, or in this run
            snapshots[step] = exported
    sample = {"condition": conds[0], "latent": latents[:1].clone()}
    return TrainResult(
        lora_path=lora_path,
        steps=config.steps,
        resumed_from=start,
        losses=losses,
        eval_loss_before=eval_before,
        eval_loss_after=eval_after,
        seconds=time.perf_counter() - t_start,
        images=n,
        is_xl=is_xl,
        unet=unet if keep_model else None,
        sample_condition=sample,
        snapshots=dict(sorted(snapshots.items())),
    )


def _first_size(data: bytes) -> int:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    return min(img.size)
