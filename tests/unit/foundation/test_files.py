"""Files written whole or not at all (`idlock.files`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from idlock.files import replace_whole


def test_the_new_content_replaces_the_old_whole(tmp_path: Path) -> None:
    target = tmp_path / "graph.onnx"
    target.write_bytes(b"old")
    replace_whole(target, b"new content")
    assert target.read_bytes() == b"new content"
    replace_whole(target, lambda f: f.write(b"written by a function"), durable=False)
    assert target.read_bytes() == b"written by a function"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.onnx"]  # no temporary file left


def test_a_failed_write_keeps_the_old_content_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"last good checkpoint")

    def dies_half_way(f) -> None:
        f.write(b"half of a ")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        replace_whole(target, dies_half_way)
    assert target.read_bytes() == b"last good checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_writers_of_the_same_file_do_not_share_a_temporary_name(tmp_path: Path) -> None:
    """Two writers of one cache file (two renders fetching one LoRA) each write their own temporary file: a shared
    name let one rename the other's half-written copy into place."""
    target = tmp_path / "lora.safetensors"
    seen: list[str] = []

    def second_writer_meanwhile(f) -> None:
        seen.append(f.name)
        f.write(b"A" * 1000)
        replace_whole(target, lambda g: (seen.append(g.name), g.write(b"B" * 2000)))
        f.write(b"A" * 1000)

    replace_whole(target, second_writer_meanwhile)
    assert seen[0] != seen[1]
    assert target.read_bytes() == b"A" * 2000  # the last whole copy, never a mix


def test_the_temporary_file_can_live_in_a_folder_of_its_own(tmp_path: Path) -> None:
    parts = tmp_path / ".tmp"
    parts.mkdir()
    target = tmp_path / "objects" / "a.png"  # its folder is made
    seen: list[str] = []
    replace_whole(target, lambda f: (seen.append(f.name), f.write(b"png")), tmp_dir=parts)
    assert Path(seen[0]).parent == parts and target.read_bytes() == b"png"
    assert os.listdir(parts) == []
