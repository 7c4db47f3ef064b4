"""What an operator sees of a running mesh, after a short story told through the REST API: every process's metrics
endpoint (the names and labels the operator's rules and dashboard use, with samples where the story did work),
`idlock status --metrics`, and the administrators' usage report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli import admin_app
from idlock.mesh import LocalMesh
from idlock.mesh_metrics import Sample, scrape, total
from tests.e2e.conftest import PASSWORD, User, face_photos, sign_up
from tests.e2e.test_studio_api import create_character, generate

pytestmark = pytest.mark.slow

STORY = [
    "Noor lights a lantern in the harbour at night",
    "Noor climbs the lighthouse stairs holding the lantern",
]


def scrape_all(mesh: LocalMesh) -> dict[str, list[Sample]]:
    return {name: scrape(c.metrics) for name, c in mesh.components.items() if c.metrics}


def grew(
    before: dict[str, list[Sample]], after: dict[str, list[Sample]], process: str, name: str, **labels
) -> float:
    return total(after[process], name, **labels) - total(before[process], name, **labels)


@pytest.fixture(scope="module")
def told(studio_mesh: LocalMesh, faces_dir: Path) -> dict:
    base = studio_mesh.components["gateway"].address
    user = sign_up(base, "operator-story@example.com")
    made = create_character(user, face_photos(faces_dir), name="Noor")
    before = scrape_all(studio_mesh)
    jobs = [generate(user, made["character_id"], prompt) for prompt in STORY]
    refused = user.client.post(
        "/api/v1/generate",
        json={"character_id": made["character_id"], "prompt": "Noor, nude, in an explicit sex scene"},
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "prompt_refused", refused.text
    after = scrape_all(studio_mesh)
    return {
        "user": user,
        "jobs": jobs,
        "before": before,
        "after": after,
        "base": base,
        "character_id": made["character_id"],
    }


def test_every_process_exports_the_domain_metrics_with_samples_where_work_happened(told: dict) -> None:
    b, a = told["before"], told["after"]
    n = len(STORY)
    # the orchestrator: jobs, their time and steps, IDR, the gates, the queue
    assert grew(b, a, "orchestrator", "idlock_jobs_submitted_total", kind="image") == n
    assert grew(b, a, "orchestrator", "idlock_jobs_finished_total", kind="image", status="succeeded") == n
    assert (
        grew(b, a, "orchestrator", "idlock_job_duration_seconds_count", kind="image", status="succeeded") == n
    )
    for step in ("context", "render", "score", "state", "record"):
        assert grew(b, a, "orchestrator", "idlock_job_step_seconds_count", kind="image", step=step) == n, step
    encoders = {s.labels["encoder"] for s in a["orchestrator"] if s.name == "idlock_idr_count"}
    assert encoders, "no IDR observed"
    for stage in ("before", "final"):
        assert grew(b, a, "orchestrator", "idlock_idr_count", stage=stage) == n, stage
    assert grew(b, a, "orchestrator", "idlock_refine_total") == n
    assert grew(b, a, "orchestrator", "idlock_moderation_total", stage="prompt", verdict="passed") == n
    assert grew(b, a, "orchestrator", "idlock_moderation_total", stage="prompt", verdict="refused") == 1
    assert grew(b, a, "orchestrator", "idlock_moderation_total", stage="output") == n
    copies = sum(
        1
        for m in (job["metrics"] for job in told["jobs"])
        if m["near_copy"] or (m["copy_note"] or "").startswith("regenerated")
    )
    assert grew(b, a, "orchestrator", "idlock_near_copies_total") == copies
    names = {s.name for s in a["orchestrator"]}
    assert {"idlock_jobs_queue_depth", "idlock_jobs_consumer_lag"} <= names  # gauges, sampled from JetStream
    # render: each provider call, labelled by provider and model
    renders = [s for s in a["render"] if s.name == "idlock_provider_seconds_count" and s.value]
    assert {(s.labels["provider"], s.labels["op"]) for s in renders} >= {("compositor", "render")}
    assert all(s.labels["model"] for s in renders)
    renders_made = n + sum(1 for job in told["jobs"] if job["metrics"]["regenerated"])  # a near-copy: again
    assert (
        grew(b, a, "render", "idlock_provider_seconds_count", provider="compositor", op="render")
        == renders_made
    )
    assert grew(b, a, "render", "idlock_object_store_seconds_count", backend="file", op="put") >= n
    # memory: the vector store, the prompt cache
    assert grew(b, a, "memory", "idlock_vector_seconds_count", op="upsert") >= n
    reads = ("retrieve", "scroll", "query_points", "search_local")  # local mode ranks episode texts in memory
    assert sum(grew(b, a, "memory", "idlock_vector_seconds_count", op=op) for op in reads) >= n
    # no LLM here: each template prompt is composed, never looked up in the prompt cache
    assert grew(b, a, "memory", "idlock_prompt_cache_total") == 0
    # identity reads what it scores from the store; every process counts its RPCs
    assert grew(b, a, "identity", "idlock_object_store_seconds_count", backend="file", op="get") >= n
    for process in ("identity", "memory", "render", "orchestrator"):
        assert grew(b, a, process, "idlock_rpc_total") > 0, process
    assert grew(b, a, "gateway", "idlock_gateway_http_requests_total", route="/api/v1/generate") == n + 1
    # no label carries an id of the story (its jobs, character, user)
    ids = {job["job_id"] for job in told["jobs"]} | {told["character_id"], told["user"].user_id}
    for process, samples in a.items():
        for s in samples:
            assert not ids & set(s.labels.values()), (process, s)


def test_status_prints_the_key_figures_of_the_running_mesh(told: dict, studio_mesh: LocalMesh) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "idlock.cli",
            "status",
            "--metrics",
            "--json",
            "--data-dir",
            str(studio_mesh.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout)["figures"]
    assert figures["jobs"]["succeeded"] >= len(STORY) and figures["submitted"] >= len(STORY)
    assert 0 < figures["duration_p50_s"] <= figures["duration_p95_s"]
    assert 0 < figures["idr_mean"] <= 1 and figures["idr_count"] >= len(STORY)
    assert figures["queue_depth"] >= 0 and "render" in figures["step_p95_s"]
    assert "compositor" in figures["provider_p95_s"]
    table = subprocess.run(
        [sys.executable, "-m", "idlock.cli", "status", "--metrics", "--data-dir", str(studio_mesh.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert table.returncode == 0 and "image job duration p50 / p95" in table.stdout
    assert "mean calibrated IDR" in table.stdout


def test_administrators_read_consumption_per_user_and_day(told: dict, studio_mesh: LocalMesh) -> None:
    with mock.patch.dict(os.environ, {"IDLOCK_DATA_DIR": str(studio_mesh.data_dir)}):
        made = CliRunner().invoke(
            admin_app,
            ["create", "--email", "ops-usage@example.com", "--password-stdin"],
            input=f"{PASSWORD}\n",
        )
    assert made.exit_code == 0, made.output
    admin = httpx.Client(base_url=told["base"], timeout=30)
    token = admin.post("/auth/login", json={"email": "ops-usage@example.com", "password": PASSWORD}).json()
    admin.headers["Authorization"] = f"Bearer {token['access_token']}"
    user: User = told["user"]
    today = datetime.now(UTC).date().isoformat()

    page = admin.get("/api/v1/admin/usage", params={"user_id": user.user_id})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["to_day"] == today and body["next_page_token"] is None
    (day,) = body["items"]
    assert day["user_id"] == user.user_id and day["day"] == today
    assert day["jobs_by_status"] == {"succeeded": len(STORY)}
    assert day["renders_by_provider"] == {"compositor": len(STORY)} and day["credits"] == len(STORY)
    cost = sum(job["metrics"].get("estimated_cost_usd", 0.0) for job in told["jobs"])  # 0 is left out
    assert day["cost_usd"] == pytest.approx(cost, abs=1e-6) and day["job_seconds"] > 0

    everyone = admin.get("/api/v1/admin/usage", params={"page_size": 500}).json()["items"]
    assert day in everyone
    first = admin.get("/api/v1/admin/usage", params={"page_size": 1}).json()
    assert first["items"] == everyone[:1] and bool(first["next_page_token"]) == (len(everyone) > 1)

    assert user.client.get("/api/v1/admin/usage").status_code == 403
    bad = admin.get("/api/v1/admin/usage", params={"from_day": "yesterday"})
    assert bad.status_code == 400 and "from_day must be a day as YYYY-MM-DD" in bad.json()["error"]["message"]
