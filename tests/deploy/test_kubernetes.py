"""deploy/k8s against the Kubernetes schemas (offline: kubernetes-validate, one pinned version),
rendered by kustomize where kubectl is installed, plus the shape issue 10 asks of it."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest

from tests.deploy.files import (
    K8S_BASE,
    KUBERNETES_VERSION,
    Doc,
    base_resource_files,
    kubectl,
    kustomize,
    manifests,
    overlay_copy,
    pod_specs,
)

needs_kubectl = pytest.mark.skipif(
    kubectl() is None,
    reason="kubectl is not installed: it renders the kustomizations offline (Debian: apt-get "
    "install kubectl from the Kubernetes repository); the unrendered base files are still "
    "validated by test_base_files_follow_the_kubernetes_schemas",
)
SCALED = {"ingest", "dispatch", "gateway"}
SERVICES = {"ingest", "dispatch", "metrics", "gateway"}


def _invalid(doc: Doc) -> str | None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{doc['kind']} {doc['metadata'].get('name')}: {exc.message}"
    return None


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    """The production overlay as `kubectl kustomize` renders it."""
    if kubectl() is None:
        pytest.skip("kubectl is not installed")
    return kustomize(overlay_copy(tmp_path_factory.mktemp("deploy")))


def _named(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_base_files_follow_the_kubernetes_schemas() -> None:
    docs = [doc for path in base_resource_files() for doc in manifests(path)]
    assert len(docs) > 10
    assert [problem for doc in docs if (problem := _invalid(doc))] == []


def test_the_schema_check_catches_a_broken_manifest() -> None:
    deployment = next(d for d in manifests(K8S_BASE / "gateway.yaml") if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["pathh"] = container["readinessProbe"]["httpGet"].pop(
        "path"
    )
    assert _invalid(deployment) is None
    assert _invalid(broken) is not None


@needs_kubectl
def test_rendered_base_and_overlay_follow_the_kubernetes_schemas(
    production: list[Doc], tmp_path: Path
) -> None:
    base = kustomize(overlay_copy(tmp_path) / ".." / ".." / "base")
    assert [problem for doc in base + production if (problem := _invalid(doc))] == []


@needs_kubectl
def test_workloads_have_probes_resources_and_configuration(production: list[Doc]) -> None:
    read = _named(production, "ConfigMap").keys() & _all_refs(production)
    assert [name.split("-")[:2] for name in read] == [["cityhub", "config"]]
    secrets = _named(production, "Secret")
    assert any(name.startswith("cityhub-secrets") for name in secrets)
    services = set()
    for name, spec in pod_specs(production):
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), name
            assert {"cpu", "memory"} <= resources["limits"].keys(), name
            command = container.get("command", [])
            if command[:2] == ["cityhub", "serve"]:
                services.add(command[2])
                assert container["readinessProbe"]["httpGet"]["path"] == "/healthz", name
                assert "livenessProbe" in container, name
                refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
                assert refs & _named(production, "ConfigMap").keys(), name
                assert refs & secrets.keys(), name
    assert services == SERVICES
    assert {d["metadata"]["name"] for d in production if d["kind"] == "Service"} >= SERVICES


@needs_kubectl
def test_autoscalers_budgets_migration_and_ingress(production: list[Doc]) -> None:
    workloads = {
        (d["kind"], d["metadata"]["name"])
        for d in production
        if d["kind"] in ("Deployment", "StatefulSet")
    }
    scaled = set()
    for hpa in _named(production, "HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) in workloads
        scaled.add(target["name"])
    assert scaled == SCALED
    budgets = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for d in _named(production, "PodDisruptionBudget").values()
    }
    assert budgets == {f"cityhub-{s}" for s in SERVICES}
    job = _named(production, "Job")["cityhub-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["cityhub", "migrate"]
    live = [
        ingress
        for ingress in _named(production, "Ingress").values()
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
        if path["path"] == "/ws/live"
    ]
    assert len(live) == 1
    annotations = live[0]["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600


@needs_kubectl
def test_ingest_replicas_get_their_own_stable_mqtt_client_id(production: list[Doc]) -> None:
    ingest = _named(production, "StatefulSet")["ingest"]
    container = ingest["spec"]["template"]["spec"]["containers"][0]
    client_id = next(e for e in container["env"] if e["name"] == "CITYHUB_MQTT_CLIENT_ID")
    assert client_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


@needs_kubectl
def test_first_apply_stage_holds_what_the_migration_needs(production: list[Doc]) -> None:
    """`kubectl apply -l cityhub.io/stage=prepare` (deploy/k8s/base/migrate-job.yaml) must bring
    the Job with everything it refers to."""
    stage = [d for d in production if d["metadata"].get("labels", {}).get("cityhub.io/stage")]
    kinds = {d["kind"] for d in stage}
    assert kinds == {"Namespace", "ConfigMap", "Secret", "Job"}
    job_refs = _all_refs([d for d in stage if d["kind"] == "Job"])
    assert job_refs <= {d["metadata"]["name"] for d in stage}


def _all_refs(docs: list[Doc]) -> set[str]:
    """Names of the ConfigMaps and Secrets the pods of `docs` read through envFrom."""
    return {
        next(iter(ref.values()))["name"]
        for _, spec in pod_specs(docs)
        for container in spec["containers"]
        for ref in container.get("envFrom", [])
    }
