"""ARCHITECTURE.md is the one-hop map from a behaviour to its module: every path it names must exist, and every
service module it names must still be where it says (a moved file fails here, not in a newcomer's search)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
#: a backticked path: has a slash and ends in a file or a folder (`idlock/...` lives under libs/)
PATH = re.compile(r"`([\w./-]+/[\w.-]*)`")


def named_paths() -> list[str]:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    return sorted({m for m in PATH.findall(text) if not m.startswith(("../", "http"))})


def resolve(name: str) -> Path:
    rel = name.split(" ")[0]
    return ROOT / "libs" / rel if rel.startswith("idlock/") else ROOT / rel


def test_every_path_in_the_map_exists() -> None:
    names = named_paths()
    assert len(names) > 40  # the map names modules, not a handful of folders
    missing = [n for n in names if not resolve(n).exists()]
    assert missing == []


def test_every_service_and_gateway_module_is_on_the_map() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    skip = {"__init__.py", "__main__.py", "settings.py"}
    unmapped = []
    for folder in [*sorted((ROOT / "services").iterdir()), ROOT / "gateway"]:
        if not folder.is_dir() or folder.name.startswith("_"):
            continue
        for module in sorted(folder.rglob("*.py")):
            rel = module.relative_to(ROOT).as_posix()
            if module.name in skip or "__pycache__" in rel:
                continue
            # named by its path, or by its name in a row of its own service
            if rel not in text and f"`{module.name}`" not in text and f"{module.stem}." not in text:
                unmapped.append(rel)
    assert unmapped == []
