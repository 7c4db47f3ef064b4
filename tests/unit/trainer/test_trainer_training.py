"""LoRA training on a tiny randomly initialised SD pipeline (CPU, 32 px, a few steps): the loss goes down, the
exported safetensors reload into diffusers with identical outputs, and a crashed run resumes from its checkpoint
to the same result as an uninterrupted one."""

from __future__ import annotations

import pytest
import torch

from services.trainer.training import LORA_FILE, Progress, TrainConfig, TrainingInterrupted, train_lora
from tests.fakes.trainer_data import png, textured

CAPTIONS = ["a photo of zq person, forest", "a photo of zq person, tavern"] * 2


def _images():
    return [png(textured(s, side=32)) for s in range(4)]


def _config(**kw) -> TrainConfig:
    base = {
        "rank": 4,
        "learning_rate": 5e-3,
        "steps": 30,
        "batch_size": 2,
        "checkpoint_every": 10,
        "device": "cpu",
        "seed": 7,
    }
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    seen: list[Progress] = []
    out = tmp_path_factory.mktemp("lora")
    result = train_lora(
        tiny_model, _images(), CAPTIONS, out, _config(), keep_model=True, on_progress=seen.append
    )
    return result, seen


def test_thirty_steps_lower_the_loss(trained) -> None:
    result, seen = trained
    assert result.steps == 30 and len(result.losses) == 30 and result.resumed_from == 0
    assert result.eval_loss_after < result.eval_loss_before, (result.eval_loss_before, result.eval_loss_after)
    assert [p.step for p in seen] == list(range(1, 31)) and seen[-1].eta_s == 0.0
    assert result.lora_path.name == LORA_FILE and result.lora_path.is_file()
    assert not (result.lora_path.parent / "checkpoints" / "checkpoint.pt").exists()  # removed once done


def test_export_reloads_with_identical_outputs(trained, tiny_model) -> None:
    from diffusers import StableDiffusionPipeline

    result, _ = trained
    cond = result.sample_condition["condition"]["prompt_embeds"][None]
    latent = torch.randn(result.sample_condition["latent"].shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        trained_out = result.unet(latent, t, encoder_hidden_states=cond).sample
        pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model), local_files_only=True)
        base_out = pipe.unet(latent, t, encoder_hidden_states=cond).sample
        pipe.load_lora_weights(str(result.lora_path.parent), weight_name=LORA_FILE)
        reloaded = pipe.unet(latent, t, encoder_hidden_states=cond).sample
    assert torch.allclose(reloaded, trained_out, atol=1e-5)
    assert not torch.allclose(base_out, trained_out, atol=1e-4)  # the LoRA does something


def test_a_crash_resumes_from_the_last_checkpoint(trained, tiny_model, tmp_path) -> None:
    uninterrupted, _ = trained

    def crash(p: Progress) -> None:
        if p.step == 17:
            raise TrainingInterrupted("simulated crash at step 17")

    ckpt = tmp_path / "ckpt"
    with pytest.raises(TrainingInterrupted):
        train_lora(
            tiny_model,
            _images(),
            CAPTIONS,
            tmp_path / "out",
            _config(),
            checkpoint_dir=ckpt,
            on_progress=crash,
        )
    assert (ckpt / "checkpoint.pt").is_file()
    steps: list[int] = []
    resumed = train_lora(
        tiny_model,
        _images(),
        CAPTIONS,
        tmp_path / "out",
        _config(),
        checkpoint_dir=ckpt,
        on_progress=lambda p: steps.append(p.step),
    )
    assert resumed.resumed_from == 10 and steps[0] == 11 and steps[-1] == 30
    assert resumed.losses == pytest.approx(uninterrupted.losses, rel=1e-4, abs=1e-5)
    from safetensors.torch import load_file

    a, b = load_file(resumed.lora_path), load_file(uninterrupted.lora_path)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_a_checkpoint_of_another_configuration_is_not_resumed(tiny_model, tmp_path) -> None:
    def crash(p: Progress) -> None:
        if p.step == 3:
            raise TrainingInterrupted("stop")

    ckpt = tmp_path / "ckpt"
    with pytest.raises(TrainingInterrupted):
        train_lora(
            tiny_model,
            _images(),
            CAPTIONS,
            tmp_path / "o",
            _config(steps=4, checkpoint_every=2),
            checkpoint_dir=ckpt,
            on_progress=crash,
        )
    assert (ckpt / "checkpoint.pt").is_file()
    other = train_lora(
        tiny_model, _images(), CAPTIONS, tmp_path / "o", _config(steps=2, rank=2), checkpoint_dir=ckpt
    )
    assert other.resumed_from == 0 and len(other.losses) == 2


def test_bad_configuration_is_refused(tiny_model, tmp_path) -> None:
    from idlock.errors import InvalidInput

    with pytest.raises(InvalidInput, match="rank"):
        train_lora(tiny_model, _images(), CAPTIONS, tmp_path, _config(rank=0))
    with pytest.raises(InvalidInput, match="captions"):
        train_lora(tiny_model, _images(), CAPTIONS[:2], tmp_path, _config())
