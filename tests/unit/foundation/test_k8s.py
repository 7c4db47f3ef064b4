"""The Kubernetes manifests (k8s/) and the image recipe stay honest: probes on the declared ports, hardened pods,
limits, only real IDLOCK_* settings, Services that select something, KEDA consumers named as in idlock.subjects.

There is no cluster here, so the checks are structural. They run on the raw base files, and, when `kubectl` is on
PATH, on what `kubectl kustomize` renders for base, dev and prod (so a patch cannot quietly undo a rule).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from idlock import subjects
from idlock.config_docs import settings_classes
from idlock.launch import SERVICES
from idlock.settings import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"
DOCKERFILE = K8S / "image" / "Dockerfile"
COMPONENTS = (*SERVICES, "gateway")
GPU_SERVICES = ("identity", "refiner", "render", "trainer")
#: seconds `run_forever` waits between NOT_SERVING and the graceful stop (libs/idlock/grpc_server.py)
DRAIN_S = 1.0
#: room for the service's shutdown steps after the gRPC grace
SHUTDOWN_MARGIN_S = 5.0
SOURCES = ("base-files", "base", "overlays/dev", "overlays/prod")
ENV_NAME = re.compile(r"\bIDLOCK_[A-Z0-9_]*[A-Z0-9]\b")

Doc = dict[str, Any]


# --- loading -------------------------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomizations() -> list[Path]:
    return [p for p in yaml_files() if p.name in ("kustomization.yaml", "kustomization.yml")]


def generator_literals(kustomization: Path, name: str) -> dict[str, str]:
    (doc,) = load(kustomization)
    for gen in doc.get("configMapGenerator", []):
        if gen["name"] == name:
            return dict(lit.split("=", 1) for lit in gen.get("literals", []))
    return {}


def base_file_docs() -> list[Doc]:
    """The base's own resources, plus the ConfigMap its generator would make."""
    (kust,) = load(K8S / "base" / "kustomization.yaml")
    docs: list[Doc] = []
    for resource in kust["resources"]:
        docs.extend(load(K8S / "base" / resource))
    data = generator_literals(K8S / "base" / "kustomization.yaml", "idlock-config")
    docs.append(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "idlock-config"}, "data": data}
    )
    return docs


@functools.cache
def rendered(target: str) -> tuple[Doc, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: rendered overlays not checked")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, f"kubectl kustomize {target} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d is not None)


def docs_for(source: str) -> list[Doc]:
    return base_file_docs() if source == "base-files" else list(rendered(source))


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def by_name(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in of_kind(docs, kind)}


def shared_config(docs: list[Doc]) -> dict[str, str]:
    maps = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("idlock-config")]
    assert len(maps) == 1, "expected exactly one idlock-config ConfigMap"
    return {k: str(v) for k, v in (maps[0].get("data") or {}).items()}


def pod_spec(dep: Doc) -> Doc:
    return dep["spec"]["template"]["spec"]


def main_container(dep: Doc) -> Doc:
    containers = pod_spec(dep)["containers"]
    assert len(containers) == 1, f"{dep['metadata']['name']}: one container expected"
    return containers[0]


def env_of(container: Doc, config: dict[str, str]) -> dict[str, str]:
    """Literal env values the container sees: the shared ConfigMap (when it uses it), then its own env."""
    env: dict[str, str] = {}
    if any(
        src.get("configMapRef", {}).get("name", "").startswith("idlock-config")
        for src in container.get("envFrom", [])
    ):
        env.update(config)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def container_ports(container: Doc) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}


def resolve_port(port: int | str, container: Doc) -> int | None:
    return port if isinstance(port, int) else container_ports(container).get(port)


def setting_names() -> set[str]:
    return {
        f"{cls.model_config.get('env_prefix', '')}{name}".upper()
        for cls in settings_classes()
        for name in cls.model_fields
    }


def settings_default(env_prefix: str, field: str) -> Any:
    for cls in settings_classes():
        if cls.model_config.get("env_prefix") == env_prefix and field in cls.model_fields:
            return cls.model_fields[field].default
    raise AssertionError(f"no setting {env_prefix}{field.upper()}")


def problems_of_deployment(dep: Doc, config: dict[str, str]) -> list[str]:
    name = dep["metadata"]["name"]
    spec = pod_spec(dep)
    c = main_container(dep)
    env = env_of(c, config)
    ports = container_ports(c)
    bad: list[str] = []

    def need(cond: bool, what: str) -> None:
        if not cond:
            bad.append(f"{name}: {what}")

    need(name in COMPONENTS, "is not a known component")
    # identity of the pod
    need(spec.get("serviceAccountName") == "idlock", "serviceAccountName must be idlock")
    need(spec.get("automountServiceAccountToken") is False, "automountServiceAccountToken must be false")
    # hardening
    psc = spec.get("securityContext", {})
    csc = c.get("securityContext", {})
    need(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, "runAsNonRoot")
    need(csc.get("runAsUser", psc.get("runAsUser")) == 1000, "runAsUser 1000")
    need(
        csc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") == "RuntimeDefault",
        "seccompProfile RuntimeDefault",
    )
    need(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    need(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem true")
    need(csc.get("privileged") is not True, "not privileged")
    caps = csc.get("capabilities", {})
    need(
        [d.upper() for d in caps.get("drop", [])] == ["ALL"] and not caps.get("add"), "capabilities drop ALL"
    )
    # writable places: /tmp and the data dir, both emptyDir
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    data_dir = env.get("IDLOCK_DATA_DIR")
    need(data_dir is not None, "IDLOCK_DATA_DIR unset (it would default into the read-only root)")
    for path in ("/tmp", data_dir):
        vol = volumes.get(mounts.get(path, ""), {})
        need("emptyDir" in vol, f"{path} must be an emptyDir mount")
    # resources
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            need(r in res.get(kind, {}), f"resources.{kind}.{r} missing")
    # metrics
    need(env.get("IDLOCK_METRICS_PORT") == "9090", "IDLOCK_METRICS_PORT must be 9090")
    need(ports.get("metrics") == 9090, "container port 'metrics' 9090 missing")
    # probes
    probes = {k: c.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    for k, probe in probes.items():
        need(isinstance(probe, dict), f"{k} missing")
    if name in SERVICES:
        port = DEFAULT_PORTS[name]
        prefix = f"IDLOCK_{name.upper()}_"
        need(c.get("args") == [f"services.{name}"], f"args must be ['services.{name}']")
        need(ports.get("grpc") == port, f"container port 'grpc' must be {port}")
        need(env.get(f"{prefix}PORT") == str(port), f"{prefix}PORT must be {port}")
        need(
            env.get(f"{prefix}HOST") == "0.0.0.0", f"{prefix}HOST must be 0.0.0.0 (probes come from the node)"
        )
        for k, probe in probes.items():
            if isinstance(probe, dict):
                need(
                    set(probe) & {"httpGet", "exec", "tcpSocket"} == set(), f"{k} must be a native gRPC probe"
                )
                need(probe.get("grpc", {}).get("port") == port, f"{k} must be grpc on port {port}")
                need(probe.get("grpc", {}).get("service", "") == "", f"{k} must check the overall service ''")
        grace = float(env.get(f"{prefix}GRACE_S", settings_default(prefix, "grace_s")))
        tgps = spec.get("terminationGracePeriodSeconds")
        need(
            isinstance(tgps, int) and tgps >= grace + DRAIN_S + SHUTDOWN_MARGIN_S,
            f"terminationGracePeriodSeconds {tgps} must exceed {prefix}GRACE_S {grace} + drain + margin",
        )
        need(
            not c.get("lifecycle", {}).get("preStop"), "no preStop hook: the service goes NOT_SERVING itself"
        )
    elif name == "gateway":
        need(c.get("args") == ["gateway"], "args must be ['gateway']")
        need(ports.get("http") == DEFAULT_PORTS["gateway"], "container port 'http' must be 8000")
        need(
            env.get("IDLOCK_GATEWAY_PORT") == str(DEFAULT_PORTS["gateway"]),
            "IDLOCK_GATEWAY_PORT must be 8000",
        )
        need(env.get("IDLOCK_GATEWAY_HOST") == "0.0.0.0", "IDLOCK_GATEWAY_HOST must be 0.0.0.0")
        paths = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        for k, path in paths.items():
            http = (probes[k] or {}).get("httpGet", {})
            need(http.get("path") == path, f"{k} must be httpGet {path}")
            need(
                resolve_port(http.get("port", -1), c) == DEFAULT_PORTS["gateway"], f"{k} must probe port 8000"
            )
        health_timeout = float(
            env.get(
                "IDLOCK_GATEWAY_HEALTH_TIMEOUT_S", settings_default("IDLOCK_GATEWAY_", "health_timeout_s")
            )
        )
        need(
            (probes["readinessProbe"] or {}).get("timeoutSeconds", 1) > health_timeout,
            "readinessProbe.timeoutSeconds must exceed IDLOCK_GATEWAY_HEALTH_TIMEOUT_S (/readyz asks the services the gateway calls)",
        )
        need(
            isinstance(spec.get("terminationGracePeriodSeconds"), int),
            "terminationGracePeriodSeconds missing",
        )
    # secrets: API keys are optional, the database URL is not
    for item in c.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref and item["name"].endswith("_API_KEY"):
            need(ref.get("optional") is True, f"{item['name']} secretKeyRef must be optional")
    return bad


# --- the rules -----------------------------------------------------------------------------------------------


def test_every_yaml_file_parses_and_is_used() -> None:
    referenced: set[Path] = set()
    for kust in kustomizations():
        (doc,) = load(kust)
        assert doc["kind"] in ("Kustomization", "Component"), kust
        entries = [*doc.get("resources", []), *doc.get("components", [])]
        entries += [p["path"] for p in doc.get("patches", []) if "path" in p]
        for entry in entries:
            target = (kust.parent / entry).resolve()
            assert target.exists(), f"{kust.relative_to(ROOT)} names {entry}, which does not exist"
            referenced.add(target)
    for path in yaml_files():
        docs = load(path)
        assert docs, f"{path.relative_to(ROOT)} is empty"
        for doc in docs:
            assert isinstance(doc, dict) and doc.get("kind") and doc.get("apiVersion"), path
        if path.name not in ("kustomization.yaml", "kustomization.yml"):
            assert path.resolve() in referenced, f"{path.relative_to(ROOT)} is not used by any kustomization"


def test_every_idlock_variable_is_a_real_setting() -> None:
    known = setting_names()
    files = [p for p in K8S.rglob("*") if p.is_file()] + [ROOT / ".dockerignore"]
    used: dict[str, set[str]] = {}
    for path in files:
        for var in ENV_NAME.findall(path.read_text()):
            used.setdefault(var, set()).add(str(path.relative_to(ROOT)))
    # the structured places must be among what the text scan saw
    for source in ("base-files",):
        for dep in of_kind(docs_for(source), "Deployment"):
            for item in main_container(dep).get("env", []):
                if item["name"].startswith("IDLOCK_"):
                    assert item["name"] in used
    assert {"IDLOCK_NATS_URL", "IDLOCK_DATABASE_URL", "IDLOCK_METRICS_PORT"} <= set(used)
    unknown = {var: sorted(where) for var, where in used.items() if var not in known}
    assert unknown == {}, "not settings (see `idlock config`)"


@pytest.mark.parametrize("source", SOURCES)
def test_deployments_are_probed_hardened_and_limited(source: str) -> None:
    docs = docs_for(source)
    config = shared_config(docs)
    deployments = by_name(docs, "Deployment")
    assert sorted(deployments) == sorted(COMPONENTS)
    problems = [p for dep in deployments.values() for p in problems_of_deployment(dep, config)]
    assert problems == []


@pytest.mark.parametrize("source", SOURCES)
def test_services_select_deployments_and_expose_their_ports(source: str) -> None:
    docs = docs_for(source)
    deployments = by_name(docs, "Deployment")
    services = by_name(docs, "Service")
    assert sorted(services) == sorted(COMPONENTS)
    for dep in deployments.values():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), dep["metadata"]["name"]
    for name, svc in services.items():
        selector = svc["spec"].get("selector") or {}
        assert selector, f"Service {name} selects nothing"
        matches = [
            d
            for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert [d["metadata"]["name"] for d in matches] == [name], (
            f"Service {name} must select Deployment {name}"
        )
        container = main_container(matches[0])
        for port in svc["spec"]["ports"]:
            assert resolve_port(port.get("targetPort", port["port"]), container) is not None, (name, port)
        assert [p["port"] for p in svc["spec"]["ports"]] == [DEFAULT_PORTS[name]], name
        # a gRPC peer's Service is headless and its callers balance round_robin, so a caller's channel reaches
        # every replica, not the one its connection landed on
        grpc_port = any(p.get("appProtocol") == "grpc" for p in svc["spec"]["ports"])
        assert (svc["spec"].get("clusterIP") == "None") == grpc_port, f"Service {name}: headless iff gRPC"
    for dep in deployments.values():
        env = env_of(main_container(dep), shared_config(docs))
        assert env.get("IDLOCK_PEER_BALANCING") == "round_robin", dep["metadata"]["name"]


@pytest.mark.parametrize("source", SOURCES)
def test_peer_addresses_name_services(source: str) -> None:
    docs = docs_for(source)
    config = shared_config(docs)
    services = by_name(docs, "Service")
    for name in SERVICES:
        host, port = config[f"IDLOCK_{name.upper()}_ADDR"].rsplit(":", 1)
        assert host.split(".")[0] == name and name in services
        assert int(port) in [p["port"] for p in services[name]["spec"]["ports"]]
    assert config["IDLOCK_STORAGE_BACKEND"] == "s3"
    assert config["IDLOCK_NATS_URL"].startswith("nats://")


@pytest.mark.parametrize("source", SOURCES)
def test_service_account_and_disruption_budgets(source: str) -> None:
    docs = docs_for(source)
    (sa,) = of_kind(docs, "ServiceAccount")
    assert sa["metadata"]["name"] == "idlock" and sa.get("automountServiceAccountToken") is False
    deployments = by_name(docs, "Deployment")
    covered = set()
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        hits = [
            n
            for n, d in deployments.items()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(hits) == 1, pdb["metadata"]["name"]
        covered.update(hits)
    assert {"gateway", "orchestrator"} <= covered


@pytest.mark.parametrize("source", ("base", "overlays/dev", "overlays/prod"))
def test_everything_lives_in_the_idlock_namespace(source: str) -> None:
    for doc in rendered(source):
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "idlock", (doc["kind"], doc["metadata"]["name"])


def scaled_objects(docs: list[Doc]) -> dict[str, Doc]:
    return by_name(docs, "ScaledObject")


def test_keda_scales_the_jetstream_workers_by_their_consumers() -> None:
    expected = {"orchestrator": subjects.ORCHESTRATOR_GENERATE, "trainer": subjects.TRAINER_TRAIN}
    docs = [
        d
        for p in (K8S / "components" / "keda").glob("*.yaml")
        for d in load(p)
        if d.get("kind") == "ScaledObject"
    ]
    found = {}
    for so in docs:
        spec = so["spec"]
        target = spec["scaleTargetRef"]["name"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], target
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "nats-jetstream"
        meta = trigger["metadata"]
        assert meta["stream"] == subjects.JOBS_STREAM
        assert meta["natsServerMonitoringEndpoint"]
        found[target] = meta["consumer"]
    assert found == expected


def test_prod_renders_keda_against_replica_free_deployments() -> None:
    docs = list(rendered("overlays/prod"))
    deployments = by_name(docs, "Deployment")
    for so in scaled_objects(docs).values():
        target = so["spec"]["scaleTargetRef"]["name"]
        assert target in deployments
        assert "replicas" not in deployments[target]["spec"], f"{target}: KEDA owns the replica count"


def gpu_limit(dep: Doc) -> Any:
    return main_container(dep).get("resources", {}).get("limits", {}).get("nvidia.com/gpu")


def test_prod_puts_model_services_on_gpus_with_mounted_models() -> None:
    docs = list(rendered("overlays/prod"))
    deployments = by_name(docs, "Deployment")
    claims = set(by_name(docs, "PersistentVolumeClaim"))
    config = shared_config(docs)
    for name, dep in deployments.items():
        spec = pod_spec(dep)
        if name not in GPU_SERVICES:
            assert gpu_limit(dep) is None, name
            continue
        assert str(gpu_limit(dep)) == "1", name
        assert spec.get("nodeSelector"), name
        assert any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", [])), name
        for vol in spec.get("volumes", []):
            if "persistentVolumeClaim" in vol:
                assert vol["persistentVolumeClaim"]["claimName"] in claims, (name, vol)

    def pvc_mounts(dep: Doc) -> list[str]:
        pvcs = {v["name"] for v in pod_spec(dep).get("volumes", []) if "persistentVolumeClaim" in v}
        return [m["mountPath"] for m in main_container(dep).get("volumeMounts", []) if m["name"] in pvcs]

    def on_pvc(dep: Doc, path: str) -> bool:
        return any(Path(path).is_relative_to(m) for m in pvc_mounts(dep))

    identity_env = env_of(main_container(deployments["identity"]), config)
    assert identity_env["IDLOCK_IDENTITY_ENCODER"] == "arcface"
    assert on_pvc(deployments["identity"], identity_env["IDLOCK_IDENTITY_MODEL_DIR"])
    render_env = env_of(main_container(deployments["render"]), config)
    assert on_pvc(deployments["render"], render_env["IDLOCK_RENDER_DIFFUSERS_MODEL_PATH"])
    assert pvc_mounts(deployments["trainer"]), "trainer needs the diffusers base model"


def test_dev_is_single_replica_cpu_only() -> None:
    docs = list(rendered("overlays/dev"))
    for dep in of_kind(docs, "Deployment"):
        assert dep["spec"]["replicas"] == 1, dep["metadata"]["name"]
        assert gpu_limit(dep) is None and not pod_spec(dep).get("tolerations"), dep["metadata"]["name"]
    assert scaled_objects(docs) == {}
    assert of_kind(docs, "PersistentVolumeClaim") == []


# --- image ---------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_image_recipe() -> None:
    ins = dockerfile_instructions()
    froms = [rest.split()[0] for op, rest in ins if op == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms), froms
    last_stage = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM") :]
    users = [rest for op, rest in last_stage if op == "USER"]
    assert users and users[-1].split(":")[0] == "1000", "the final stage must run as uid 1000 (numeric)"
    assert [rest for op, rest in ins if op == "ENTRYPOINT"] == ['["python", "-m"]']
    runs = " ".join(rest for op, rest in ins if op == "RUN")
    assert 'pip install ".[all]"' in runs
    assert "onnxruntime-gpu==" in runs and "uninstall -y onnxruntime" in runs, (
        "mirror setup.sh's onnxruntime fix-up"
    )
    for fetcher in (
        "huggingface-cli",
        "snapshot_download",
        "hf_hub_download",
        "wget ",
        "curl ",
        "insightface.app",
    ):
        assert fetcher not in runs, f"the image must not download weights ({fetcher})"


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    allow_list = patterns[0] == "*"
    for path in (".git", ".venv", "node_modules", ".idlock", "tests"):
        excluded = allow_list and f"!{path}" not in patterns and f"!{path}/" not in patterns
        assert excluded or path in patterns or f"{path}/" in patterns, path
    if allow_list:
        for needed in ("pyproject.toml", "README.md", "libs/", "services/", "gateway/"):
            assert f"!{needed}" in patterns, f"{needed} is needed by `pip install .`"
