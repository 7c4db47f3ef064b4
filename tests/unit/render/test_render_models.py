import pytest

from idlock.errors import InvalidInput
from services.render.models import EditRequest, RenderRequest, nearest_aspect
from services.render.settings import RenderSettings


def test_sizes_and_aspect():
    assert RenderRequest(prompt="x").size(768, 768) == (768, 768)
    assert RenderRequest(prompt="x", width=1024, height=576).size(768, 768) == (1024, 576)
    assert RenderRequest(prompt="x", aspect_ratio="16:9").size(1024, 1024) == (1024, 576)
    assert RenderRequest(prompt="x", aspect_ratio="9:16").size(1024, 1024) == (576, 1024)
    assert RenderRequest(prompt="x", width=1024, height=768).aspect() == "4:3"
    assert nearest_aspect(1000, 1010) == "1:1"


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"prompt": " "}, "prompt"),
        ({"prompt": "x", "width": 4}, "width"),
        ({"prompt": "x", "aspect_ratio": "7:3"}, "aspect_ratio"),
        ({"prompt": "x", "seed": -1}, "seed"),
        ({"prompt": "x", "drift": "other_face"}, "drift_face"),
        ({"prompt": "x", "references": [b""]}, "reference image 0"),
        ({"prompt": "x", "lora_scale": 9}, "lora_scale"),
    ],
)
def test_invalid_requests_name_the_problem(kw, words):
    with pytest.raises(InvalidInput, match=words):
        RenderRequest(**kw).validate()


def test_edit_validation():
    with pytest.raises(InvalidInput, match="strength"):
        EditRequest(image=b"x", prompt="p", strength=0).validate()
    with pytest.raises(InvalidInput, match="empty"):
        EditRequest(image=b"", prompt="p").validate()


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("IDLOCK_RENDER_PROVIDERS", '["compositor", "gemini"]')
    monkeypatch.setenv("IDLOCK_RENDER_GEMINI_API_KEY", "secret")
    monkeypatch.setenv("IDLOCK_RENDER_BACKOFF_BASE_S", "0.01")
    s = RenderSettings()
    assert s.providers == ["compositor", "gemini"]
    assert s.gemini_api_key.get_secret_value() == "secret"
    assert "secret" not in repr(s)
    assert s.backoff_base_s == 0.01 and s.max_retries == 2


def test_settings_reject_unknown_provider(monkeypatch):
    monkeypatch.setenv("IDLOCK_RENDER_PROVIDERS", '["dalle"]')
    with pytest.raises(ValueError, match="dalle"):
        RenderSettings()


def test_every_field_described():
    for name, f in RenderSettings.model_fields.items():
        assert f.description, name
