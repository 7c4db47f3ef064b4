"""The monitoring component stays true to the code: its alert rules pass promtool (checked and unit-tested), every
alert has a unit test that makes it fire, the rules and the dashboard name only metrics the processes export, and
the prod overlay ships them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import gateway.metrics  # noqa: F401 - registers the gateway's metrics
import idlock.metrics
import idlock.telemetry  # noqa: F401 - registers the RPC metrics

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "k8s" / "components" / "monitoring"
ALERT_TESTS = sorted((ROOT / "tests" / "alerts").glob("*_test.yaml"))
#: metrics from elsewhere: Prometheus's own `up`, kube-state-metrics
EXTERNAL = {"up", "kube_pod_container_status_restarts_total"}
METRIC = re.compile(r"\b(idlock_[a-z_]+|up|kube_[a-z_]+)\b")


def rules() -> list[dict]:
    (doc,) = [d for d in yaml.safe_load_all((MONITORING / "prometheusrule.yaml").read_text()) if d]
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads((MONITORING / "idlock-dashboard.json").read_text())


def exported() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        for sample in family.samples:
            names.add(sample.name)
        names.add(family.name)
    # a labelled metric with no child yet has no samples: add its series names
    for collector in list(REGISTRY._collector_to_names):
        names.update(REGISTRY._collector_to_names[collector])
    return names


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    if shutil.which("promtool") is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing under CI (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_alerts.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    tests = [t for path in ALERT_TESTS for t in yaml.safe_load(path.read_text())["tests"]]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts, "no alerts"
    assert alerts - firing == set(), f"alerts without a firing unit test: {sorted(alerts - firing)}"
    # the list: failure ratio, SLO burn, queue lag, service down / restarting, vector store, storage, IDR
    for needed in (
        "JobFailure",
        "SLOBurn",
        "QueueLag",
        "ServiceDown",
        "Restarting",
        "VectorStore",
        "Storage",
        "IDR",
    ):
        assert any(needed in a for a in alerts), needed


def test_rules_and_dashboard_name_only_metrics_the_processes_export() -> None:
    names = exported()
    exprs = [r["expr"] for r in rules()]
    exprs += [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in METRIC.findall(e)}
    unknown = {m for m in used - EXTERNAL if m not in names}
    assert not unknown, f"not exported by any process: {sorted(unknown)}"
    recorded = {r["record"] for r in rules() if "record" in r}
    for e in exprs:
        for name in re.findall(r"\bidlock:[a-z0-9_:]+", e):
            assert name in recorded, f"{name} is not a recording rule"


def test_the_dashboard_covers_jobs_slo_latency_idr_and_queue() -> None:
    board = dashboard()
    assert board["uid"] and board["panels"]
    text = json.dumps(board)
    for metric in (
        "idlock_jobs_finished_total",
        "idlock:job_slow_ratio",
        "idlock_job_step_seconds_bucket",
        "idlock_provider_seconds_bucket",
        "idlock_idr_sum",
        "idlock_jobs_queue_depth",
    ):
        assert metric in text, metric
    for panel in board["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_prod_ships_the_rules_the_scrape_and_the_dashboard() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: rendered overlays not checked")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / "prod")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    assert ("PrometheusRule", "idlock") in docs and ("PodMonitor", "idlock") in docs
    board = docs[("ConfigMap", "idlock-grafana-dashboard")]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["idlock-dashboard.json"])["uid"] == dashboard()["uid"]
    for key in (
        ("PrometheusRule", "idlock"),
        ("PodMonitor", "idlock"),
        ("ConfigMap", "idlock-grafana-dashboard"),
    ):
        assert docs[key]["metadata"]["namespace"] == "idlock"
    monitor = docs[("PodMonitor", "idlock")]["spec"]
    assert monitor["podMetricsEndpoints"][0]["port"] == "metrics"
