"""LoRA training speed and memory: our trainer against a plain reference loop, in the same run, on a GPU.

    .venv/bin/python bench/train_lora.py [--steps 30] [--warmup 5] [--batch 1] [--rank 32] [--resolution 512]
    .venv/bin/python bench/train_lora.py --tiny        # CPU smoke run on a tiny pipeline (numbers mean nothing)

Model: full-size Stable Diffusion 1.5 shapes (UNet 320/640/1280/1280 with 768-d cross-attention, the SD VAE, a
CLIP ViT-L/14 text encoder), randomly initialised from their configs: nothing is downloaded, and speed and memory
depend on shapes, not weights. Data: 8 synthetic 512 px images with 2 captions.

Both sides run `services.trainer.training.train_lora` with rank 32 LoRA on the UNet attention projections and the
same steps, batch and seed:
- ours: VAE latents and text embeddings computed once and cached (VAE and text encoder moved off the GPU), frozen
  UNet in bf16 with autocast, SDPA attention, gradient checkpointing;
- reference: everything in fp32, latents and text embeddings recomputed every step (a plain diffusers/peft loop),
  no gradient checkpointing.
steps/s is measured over the steps after `--warmup`; peak memory is torch.cuda.max_memory_allocated per side.

Without CUDA it refuses (exit 2) unless `--tiny` is given. The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "libs"))


def sd15_pipeline(seed: int = 0):
    """SD 1.5 shapes, random weights (UNet ~860M, VAE ~84M, CLIP text ~123M parameters)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.fakes.tiny_diffusers import _write_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=(
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    tok_dir = Path(tempfile.mkdtemp(prefix="bench_tok_"))
    tokenizer = _write_tokenizer(tok_dir)
    tokenizer.model_max_length = 77
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            vocab_size=49408,
            max_position_embeddings=77,
            projection_dim=768,
        )
    )
    scheduler = DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_pipeline():
    from diffusers import DiffusionPipeline

    from tests.fakes.tiny_diffusers import build_tiny_sd

    path = build_tiny_sd(Path(tempfile.mkdtemp(prefix="bench_tiny_")) / "model")
    return DiffusionPipeline.from_pretrained(str(path), local_files_only=True), path


def synthetic_images(n: int, side: int) -> list[bytes]:
    import io

    import numpy as np
    from PIL import Image

    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        blocks = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        arr = np.kron(blocks, np.ones((side // 16, side // 16, 1), dtype=np.uint8))
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def run_side(name: str, make_pipe, model_path: Path, images, captions, args, *, optimized: bool) -> dict:
    import torch

    from services.trainer.training import TrainConfig, train_lora

    cuda = torch.cuda.is_available() and not args.tiny
    pipe = make_pipe()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    stamps: list[float] = []

    def on_progress(_p) -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    config = TrainConfig(
        rank=args.rank,
        learning_rate=1e-4,
        steps=args.warmup + args.steps,
        batch_size=args.batch,
        checkpoint_every=10**9,
        device="cuda" if cuda else "cpu",
        resolution=args.resolution,
        optimized=optimized,
        cache=optimized,
        eval_images=1,
    )
    with tempfile.TemporaryDirectory(prefix=f"bench_{name}_") as out:
        result = train_lora(
            model_path, images, captions, Path(out), config, pipe=pipe, on_progress=on_progress
        )
    timed = stamps[args.warmup :]
    seconds = timed[-1] - stamps[args.warmup - 1] if args.warmup else timed[-1] - stamps[0]
    steps = len(timed) if args.warmup else len(timed) - 1
    out = {
        "steps_per_s": steps / seconds if seconds > 0 else 0.0,
        "images_per_s": steps * args.batch / seconds if seconds > 0 else 0.0,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "final_loss": result.losses[-1],
        "total_s": result.seconds,
    }
    del pipe, result
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30, help="timed steps per side")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run on a tiny pipeline (32 px)")
    args = ap.parse_args()

    import torch

    if args.tiny:
        args.resolution = 32
        args.steps, args.warmup = min(args.steps, 4), min(args.warmup, 1)
        pipe0, model_path = tiny_pipeline()
        del pipe0

        def make_pipe():
            from diffusers import DiffusionPipeline

            return DiffusionPipeline.from_pretrained(str(model_path), local_files_only=True)

        model = "tiny SD (random, 32 px)"
    else:
        if not torch.cuda.is_available():
            print(
                "bench/train_lora.py needs a CUDA GPU (full-size SD 1.5 shapes at 512 px); none is present. "
                "Run it on a GPU machine, or pass --tiny for a CPU smoke run.",
                file=sys.stderr,
            )
            return 2
        model_dir = Path(tempfile.mkdtemp(prefix="bench_sd15_"))
        (model_dir / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
        model_path = model_dir

        def make_pipe():
            return sd15_pipeline()

        model = "SD 1.5 shapes (random init)"

    images = synthetic_images(args.images, max(args.resolution, 16))
    captions = [f"a photo of sks person, scene {i % 2}" for i in range(args.images)]
    ours = run_side("ours", make_pipe, model_path, images, captions, args, optimized=True)
    ref = run_side("reference", make_pipe, model_path, images, captions, args, optimized=False)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.tiny else "cpu"
    speedup = ours["steps_per_s"] / ref["steps_per_s"] if ref["steps_per_s"] else None
    mem_ratio = (
        ours["peak_mem_gib"] / ref["peak_mem_gib"] if ours["peak_mem_gib"] and ref["peak_mem_gib"] else None
    )
    print(f"model: {model}; device: {device}; {args.resolution} px, rank {args.rank}, batch {args.batch}")
    print(f"{'side':<10} {'steps/s':>9} {'img/s':>8} {'peak GiB':>9}")
    for name, r in (("ours", ours), ("reference", ref)):
        mem = f"{r['peak_mem_gib']:.2f}" if r["peak_mem_gib"] is not None else "-"
        print(f"{name:<10} {r['steps_per_s']:>9.3f} {r['images_per_s']:>8.3f} {mem:>9}")
    if speedup:
        print(
            f"ours / reference: {speedup:.2f}x steps/s"
            + (f", {mem_ratio:.2f}x peak memory" if mem_ratio else "")
        )
    result = {
        "bench": "train_lora",
        "model": model,
        "device": device,
        "resolution": args.resolution,
        "rank": args.rank,
        "batch": args.batch,
        "steps": args.steps,
        "ours": ours,
        "reference": ref,
        "speedup": speedup,
        "peak_mem_ratio": mem_ratio,
        "tiny": args.tiny,
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
