"""``deploy/``: the image, the compose file and the Kubernetes manifests agree with each other.

Docker cannot run here, so these tests read the files: they parse, reference files that
exist, the right image, ports and paths, and every ``--set`` they pass is a valid spec key.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamal.pipelines import load_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
METRICS_PORT = 9464  # /metrics and /healthz ([observability] of deploy/pipeline.toml)
RENDEZVOUS_PORT = 29500
SPEC_IN_IMAGE = "/etc/streamal/pipeline.toml"


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def instructions(name: str) -> list[str]:
    return [rest for word, rest in dockerfile() if word == name]


def entry_command() -> list[str]:
    (entrypoint,), (cmd,) = instructions("ENTRYPOINT"), instructions("CMD")
    return json.loads(entrypoint) + json.loads(cmd)


def copies() -> dict[str, str]:
    """Destination in the image → source in the build context (the repository root)."""
    return {dest: src for src, dest in (rest.split()[-2:] for rest in instructions("COPY"))}


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def k8s_documents() -> dict[Path, list[dict[str, Any]]]:
    return {path: [d for d in yaml.safe_load_all(path.read_text()) if d]
            for path in sorted(K8S.rglob("*.yaml"))}


def workloads() -> list[dict[str, Any]]:
    return [d for docs in k8s_documents().values() for d in docs
            if d.get("kind") in ("Deployment", "StatefulSet") and "selector" in d.get("spec", {})]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    return c


def overrides(args: list[str], env: dict[str, str]) -> list[str]:
    """The ``--set`` values of ``args``, ``$(VAR)`` expanded from ``env`` as Kubernetes does."""
    out = []
    for flag, value in zip(args, args[1:]):
        if flag == "--set":
            out.append(re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], value))
    return out


def topic_partitions() -> dict[str, int]:
    """Topics the compose stack creates, with their partition counts."""
    command = " ".join(compose()["services"]["topics"]["command"])
    pairs = re.search(r"for t in (.*?); do", command)[1].split()
    return {name: int(n) for name, n in (p.split(":") for p in pairs)}


# ---- the spec ------------------------------------------------------------------------------------
def test_the_deploy_spec_is_valid_and_scaled_out() -> None:
    spec = load_spec(str(DEPLOY / "pipeline.toml"))
    assert spec["source"]["type"] == "kafka" and spec["source"]["group_id"]
    assert spec["scaleout"]["mode"] == "per_partition"
    assert spec["checkpoint"]["directory"].startswith("/var/lib/streamal/")
    observability = spec["observability"]  # the endpoint the probes and Prometheus call
    assert observability["metrics_port"] == METRICS_PORT and observability["bind"] == "0.0.0.0"


# ---- the image -----------------------------------------------------------------------------------
def test_the_image_runs_the_mounted_spec_as_a_non_root_user_with_a_health_check() -> None:
    (base,) = [rest for word, rest in dockerfile() if word == "FROM"]
    assert base == "${BASE_IMAGE}" and any(a.startswith("BASE_IMAGE=") for a in instructions("ARG"))
    assert entry_command() == ["streamal", "run", SPEC_IN_IMAGE]
    (user,) = instructions("USER")
    assert user.split(":")[0] not in ("root", "0")
    (check,) = instructions("HEALTHCHECK")
    assert f"127.0.0.1:{METRICS_PORT}/healthz" in check
    exposed = {int(p) for rest in instructions("EXPOSE") for p in rest.split()}
    assert exposed == {METRICS_PORT, RENDEZVOUS_PORT}
    for src in copies().values():
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    assert copies()[SPEC_IN_IMAGE] == "deploy/pipeline.toml"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for src in copies().values():
        assert f"!{src.rstrip('.').rstrip('/')}" in {line.rstrip("/") for line in ignore} \
            or src in ("./",), f"{src} is excluded from the build context"


# ---- compose -------------------------------------------------------------------------------------
def test_compose_runs_kafka_kraft_the_pipeline_a_producer_and_prometheus() -> None:
    c = compose()
    services = c["services"]
    assert set(services) >= {"kafka", "topics", "producer", "streamal", "prometheus"}

    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{kafka['KAFKA_NODE_ID']}@kafka:9093"
    assert int(kafka["KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS"]) <= 3000  # streamal's session
    assert "PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"]

    app = services["streamal"]
    assert app["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert app["image"] == f"streamal:{version()}" == services["producer"]["image"]
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).is_file()
    mounts = dict(v.split(":")[:2] for v in app["volumes"])
    assert mounts["./pipeline.toml"] == SPEC_IN_IMAGE
    assert app["command"] == entry_command()[1:]
    assert str(METRICS_PORT) in [str(p) for p in app["expose"]]

    spec = load_spec(str(DEPLOY / "pipeline.toml"))
    assert spec["source"]["bootstrap_servers"] == "kafka:9092"
    topics = topic_partitions()
    assert spec["source"]["topics"] in topics
    assert app["deploy"]["replicas"] <= topics[spec["source"]["topics"]]
    for kind, target in spec["outputs"].items():
        if isinstance(target, dict) and target.get("topic"):
            assert target["topic"] in topics, f"outputs.{kind}: topic not created"

    producer = services["producer"]
    script = producer["entrypoint"][-1]
    assert copies()[script] == "deploy/producer.py"
    assert f"./producer.py:{script}:ro" in producer["volumes"]
    args = producer["command"]
    assert args[args.index("--topic") + 1] == spec["source"]["topics"]
    assert args[args.index("--bootstrap") + 1] == "kafka:9092"

    prometheus = services["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"])
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert mounts["./prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    (job,) = config["scrape_configs"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["streamal"] and sd["port"] == METRICS_PORT
    assert job["metrics_path"] == "/metrics"
    assert "checkpoints" in c["volumes"]


# ---- Kubernetes ----------------------------------------------------------------------------------
def test_every_manifest_parses_and_every_kustomization_names_existing_files() -> None:
    documents = k8s_documents()
    assert documents
    for path, docs in documents.items():
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), path
        if path.name == "kustomization.yaml":
            (k,) = docs
            for entry in k.get("resources", []) + [p["path"] for p in k.get("patches", [])]:
                assert (path.parent / entry).exists(), f"{path}: {entry} does not exist"


def test_the_configmap_holds_the_deploy_spec() -> None:
    (cm,) = [d for docs in k8s_documents().values() for d in docs if d["kind"] == "ConfigMap"]
    assert cm["data"]["pipeline.toml"] == (DEPLOY / "pipeline.toml").read_text()


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_workloads_probe_healthz_are_scraped_and_run_valid_specs(kind: str) -> None:
    (w,) = [w for w in workloads() if w["kind"] == kind]
    partitions = topic_partitions()["sensors"]
    assert 1 <= w["spec"]["replicas"] <= partitions
    template = w["spec"]["template"]
    notes = template["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/port"] == \
        str(METRICS_PORT) and notes["prometheus.io/path"] == "/metrics"
    c = container(w)
    assert c["image"] == f"streamal:{version()}"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http-metrics"] == METRICS_PORT
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz" and ports.get(get["port"], get["port"]) == METRICS_PORT
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e.get("value", "") for e in c["env"]}
    args = c["args"]
    assert args[:2] == entry_command()[1:2] + [SPEC_IN_IMAGE]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/etc/streamal"] == "spec"
    spec = load_spec(str(DEPLOY / "pipeline.toml"), overrides(args, env))
    assert mounts["/var/lib/streamal"] == "checkpoints"
    assert spec["checkpoint"]["directory"].startswith("/var/lib/streamal/")
    if kind == "StatefulSet":
        assert spec["scaleout"]["mode"] == "shared"
        assert w["spec"]["podManagementPolicy"] == "Parallel"  # ranks wait for each other
        assert int(env["WORLD_SIZE"]) == w["spec"]["replicas"]
        assert env["MASTER_ADDR"] == f"{w['metadata']['name']}-0.{w['spec']['serviceName']}"
        assert int(env["MASTER_PORT"]) == RENDEZVOUS_PORT == ports["rendezvous"]
        (rank,) = [e for e in c["env"] if e["name"] == "RANK"]
        assert "pod-index" in rank["valueFrom"]["fieldRef"]["fieldPath"]
        (headless,) = [d for docs in k8s_documents().values() for d in docs
                       if d["kind"] == "Service" and d["metadata"]["name"] ==
                       w["spec"]["serviceName"]]
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["ports"][0]["port"] == RENDEZVOUS_PORT
    else:
        assert spec["scaleout"]["mode"] == "per_partition"
        (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == "checkpoints"]
        claim = volume["persistentVolumeClaim"]["claimName"]
        (pvc,) = [d for docs in k8s_documents().values() for d in docs
                  if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim]
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # partitions move between pods


def test_the_gpu_overlay_requests_a_gpu_and_runs_the_model_on_cuda() -> None:
    (patch,) = yaml.safe_load_all((K8S / "gpu" / "gpu-patch.yaml").read_text())
    (c,) = patch["spec"]["template"]["spec"]["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["image"] == f"streamal:{version()}-cuda"
    values = overrides(c["args"], {"KAFKA_BOOTSTRAP": "kafka:9092"})
    assert "model.device=cuda" in values and "scaleout.backend=nccl" in values
    # the spec is valid apart from the device this machine may lack
    load_spec(str(DEPLOY / "pipeline.toml"), [v for v in values if not v.startswith("model.")])


def test_no_file_names_a_path_of_the_build_machine() -> None:
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "/work/" not in text and "/root/" not in text and "/home/" not in text, path
    for word, rest in dockerfile():
        if word == "RUN":
            shlex.split(rest)  # balanced quotes
