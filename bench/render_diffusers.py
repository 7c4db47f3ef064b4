"""The local diffusers render path: the render service's provider (`DiffusersProvider.render_sync`: the shared
pipeline, its lock, LoRA handling, PNG encoding, provenance) against a plain diffusers pipeline call on the same
weights, in the same run.

    .venv/bin/python bench/render_diffusers.py [--images 8] [--steps 25] [--size 512] [--lora-rank 32]
    .venv/bin/python bench/render_diffusers.py --tiny      # CPU smoke run on a tiny pipeline (numbers mean nothing)

Model: Stable Diffusion 1.5 shapes, randomly initialised (`bench/train_lora.py`'s `sd15_pipeline`) and saved in
fp16 to a temp folder: nothing is downloaded; speed and memory depend on shapes, not weights. Both sides load it the
same way (fp16 on CUDA) and draw the same prompts, seeds, steps and size; the sides alternate image by image so
that clocks and thermals hit both alike. Ours renders once without a LoRA and once with a rank `--lora-rank` LoRA on
the UNet's attention (a character's trained LoRA, loaded by the provider); the peer has no LoRA.

Without CUDA it refuses (exit 2) unless `--tiny` is given. The last line is `RESULT {json}`: images_per_s,
peer_images_per_s, overhead_ratio (ours / peer seconds per image), lora_images_per_s, peak_mem_gb.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "libs"))

PROMPTS = ["a knight at the castle gate", "a portrait in the forest at dawn", "a traveller in a tavern"]


def saved_model(tiny: bool) -> Path:
    import torch

    if tiny:
        from tests.fakes.tiny_diffusers import build_tiny_sd

        return build_tiny_sd(Path(tempfile.mkdtemp(prefix="bench_tiny_")) / "model")
    sys.path.insert(0, str(ROOT / "bench"))
    from train_lora import sd15_pipeline

    path = Path(tempfile.mkdtemp(prefix="bench_sd15_")) / "model"
    sd15_pipeline().to(torch.float16).save_pretrained(str(path), safe_serialization=True)
    return path


def lora_file(model: Path, rank: int) -> Path:
    """A LoRA of the UNet's attention projections at `rank` (random, non-zero), saved as the trainer saves one."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = StableDiffusionPipeline.from_pretrained(str(model), local_files_only=True)
    unet = pipe.unet
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    out = Path(tempfile.mkdtemp(prefix="bench_lora_"))
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=get_peft_model_state_dict(unet))
    return out / "pytorch_lora_weights.safetensors"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8, help="timed images per side")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--lora-rank", type=int, default=32)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    import torch
    from diffusers import AutoPipelineForText2Image

    from services.render.models import RenderRequest
    from services.render.providers.diffusers_local import DiffusersProvider

    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print("no CUDA device: run on a GPU machine, or pass --tiny for a CPU smoke run", file=sys.stderr)
        return 2
    if args.tiny:
        args.size, args.steps = 32, 2
    model = saved_model(args.tiny)
    if args.tiny:
        args.lora_rank = 4
    lora = lora_file(model, args.lora_rank)
    settings = SimpleNamespace(
        diffusers_model_path=model,
        diffusers_device="auto",
        diffusers_steps=args.steps,
        diffusers_guidance=7.0,
        diffusers_default_size=args.size,
    )
    ours = DiffusersProvider(settings)
    dtype = torch.float16 if cuda else torch.float32
    peer = AutoPipelineForText2Image.from_pretrained(str(model), dtype=dtype, local_files_only=True)
    peer = peer.to("cuda" if cuda else "cpu")
    peer.set_progress_bar_config(disable=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def ours_once(i: int, with_lora: bool) -> float:
        t0 = time.perf_counter()
        req = RenderRequest(prompt=PROMPTS[i % 3], seed=i, width=args.size, height=args.size)
        if with_lora:
            req.lora_path, req.lora_scale = str(lora), 1.0
        ours.render_sync(req)
        sync()
        return time.perf_counter() - t0

    def peer_once(i: int) -> float:
        t0 = time.perf_counter()
        gen = torch.Generator(device="cuda" if cuda else "cpu").manual_seed(i)
        peer(
            prompt=PROMPTS[i % 3],
            width=args.size,
            height=args.size,
            num_inference_steps=args.steps,
            guidance_scale=7.0,
            generator=gen,
            output_type="pil",
        )
        sync()
        return time.perf_counter() - t0

    ours_once(0, False), peer_once(0)  # warm-up: loading, kernels
    plain, theirs, with_lora = [], [], []
    for i in range(1, args.images + 1):
        plain.append(ours_once(i, False))
        theirs.append(peer_once(i))
    ours_once(0, True)  # the LoRA's load, then its renders
    with_lora = [ours_once(i, True) for i in range(1, args.images + 1)]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    result = {
        "images": args.images,
        "steps": args.steps,
        "size": args.size,
        "images_per_s": round(1 / statistics.median(plain), 3),
        "peer_images_per_s": round(1 / statistics.median(theirs), 3),
        "overhead_ratio": round(statistics.median(plain) / statistics.median(theirs), 3),
        "lora_images_per_s": round(1 / statistics.median(with_lora), 3),
        "lora_rank": args.lora_rank,
        "peak_mem_gb": round(peak, 2),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (--tiny)",
    }
    print(
        f"diffusers render {args.size}px x {args.steps} steps: ours {result['images_per_s']} img/s, plain pipeline "
        f"{result['peer_images_per_s']} img/s (x{result['overhead_ratio']} time), with a rank "
        f"{args.lora_rank} LoRA {result['lora_images_per_s']} img/s"
    )
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
