import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.memory.context import ContextConfig
from services.memory.llm import LlmConfig
from services.memory.settings import MemorySettings


def test_defaults_and_env(monkeypatch):
    s = MemorySettings()
    assert (s.w_s, s.w_e, s.alpha) == (0.6, 0.4, 0.6)
    assert (s.consolidate_every_images, s.consolidate_every_videos) == (5, 3)
    assert all(f.description for f in MemorySettings.model_fields.values())
    monkeypatch.setenv("IDLOCK_MEMORY_DENY_LIST", "gore, nsfw")
    monkeypatch.setenv("IDLOCK_MEMORY_GROQ_API_KEY", "secret")
    monkeypatch.setenv("IDLOCK_MEMORY_ALPHA", "0.5")
    s = MemorySettings()
    assert s.deny_list == ["gore", "nsfw"] and "secret" not in repr(s)
    cfg = ContextConfig.from_settings(s)
    assert cfg.deny_list == ("gore", "nsfw") and cfg.merge.alpha == 0.5
    llm = LlmConfig.from_settings(s)
    assert llm.enabled and "secret" not in llm.engine_key()
    monkeypatch.setenv("IDLOCK_MEMORY_DENY_LIST", json.dumps(["a, b", "c"]))
    assert MemorySettings().deny_list == ["a, b", "c"]
    monkeypatch.setenv("IDLOCK_MEMORY_ALPHA", "0")
    with pytest.raises(ValidationError, match="alpha"):
        MemorySettings()


SCRIPT = """
import sys; sys.path.insert(0, "tests/unit/memory")
from test_memory_prompt import inputs
from services.memory.prompt import compose_template
print(compose_template(inputs()).template_hash)
"""


def test_byte_identical_across_hash_seeds():
    root = Path(__file__).resolve().parents[3]
    hashes = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        hashes.add(out.stdout.strip())
    assert len(hashes) == 1
