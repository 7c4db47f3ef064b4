"""Check the alert rules with Prometheus's own tool: `promtool check rules` on the PrometheusRule's spec.groups
(k8s/components/monitoring/prometheusrule.yaml), then `promtool test rules` (tests/alerts/*_test.yaml).

The unit tests compare labels only: the rules they load are the same groups with the annotations left out (their
templates are checked by `check rules`). Exit status: promtool's, or 2 when promtool is missing.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
TESTS = sorted((ROOT / "tests" / "alerts").glob("*_test.yaml"))


def groups() -> dict:
    (doc,) = [d for d in yaml.safe_load_all(RULES.read_text()) if d]
    return {"groups": doc["spec"]["groups"]}


def without_annotations(rules: dict) -> dict:
    out = copy.deepcopy(rules)
    for group in out["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return out


def main() -> int:
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool is not installed (Debian: apt-get install prometheus)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full" / "rules.yaml"
        full.parent.mkdir()
        full.write_text(yaml.safe_dump(groups(), sort_keys=False))
        checked = subprocess.run([promtool, "check", "rules", str(full)], check=False)
        if checked.returncode:
            return checked.returncode
        (Path(tmp) / "rules.yaml").write_text(yaml.safe_dump(without_annotations(groups()), sort_keys=False))
        copies = [str(shutil.copy(t, Path(tmp) / t.name)) for t in TESTS]
        return subprocess.run([promtool, "test", "rules", *copies], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
