"""Regenerate the Python stubs (+ .pyi) for protos/idlock/v1 into libs/idlock/v1.

    python scripts/gen_protos.py            # write the stubs
    python scripts/gen_protos.py --check    # exit 1 when the committed stubs differ from the protos

buf's remote plugins need a network, so stubs come from grpc_tools.protoc (pinned by the installed grpcio-tools).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
OUT_ROOT = ROOT / "libs"
PACKAGE_DIR = Path("idlock") / "v1"


def generate(out_root: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    from grpc_tools import protoc

    protos = sorted((proto_root / PACKAGE_DIR).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {proto_root / PACKAGE_DIR}")
    well_known = resources.files("grpc_tools") / "_proto"
    (out_root / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p.relative_to(proto_root)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed: see the messages above")
    return sorted(
        p for p in (out_root / PACKAGE_DIR).iterdir() if p.name.endswith((".py", ".pyi")) and "_pb2" in p.name
    )


def stale_stubs(proto_root: Path = PROTO_ROOT, stub_root: Path = OUT_ROOT) -> list[str]:
    """Names of stubs that differ from (or are missing against) what the protos generate now."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp), proto_root)
        committed_dir = stub_root / PACKAGE_DIR
        problems = []
        fresh_names = {p.name for p in fresh}
        for p in fresh:
            mine = committed_dir / p.name
            if not mine.exists():
                problems.append(f"{p.name}: missing")
            elif not filecmp.cmp(p, mine, shallow=False):
                problems.append(f"{p.name}: differs")
        for p in committed_dir.glob("*_pb2*.py*"):
            if p.name not in fresh_names:
                problems.append(f"{p.name}: no longer generated")
        return problems


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when stubs are stale")
    args = parser.parse_args()
    if args.check:
        problems = stale_stubs()
        for line in problems:
            print(line)
        if problems:
            print("stubs are stale: run `python scripts/gen_protos.py`")
            return 1
        print("stubs match the protos")
        return 0
    written = generate(OUT_ROOT)
    print(f"wrote {len(written)} files under {OUT_ROOT / PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
