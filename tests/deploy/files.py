"""Read the deploy files as the tools that use them would: compose with its variables filled in,
the Dockerfile's instructions, and the Kubernetes manifests as kustomize renders them."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser
from pydantic import BaseModel

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
COMPOSE_ENV_EXAMPLE = DEPLOY / "cityhub.env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S = DEPLOY / "k8s"
K8S_BASE = K8S / "base"
K8S_OVERLAY = K8S / "overlays" / "production"
# The Kubernetes version the manifests are validated against (kubernetes-validate's schemas).
KUBERNETES_VERSION = "1.32.0"
KUSTOMIZE_TIMEOUT_S = 60
# Variables cityhub containers may set that are not `CITYHUB_*` settings, with their reader.
OTHER_VARIABLES = {"FORWARDED_ALLOW_IPS": "uvicorn: proxies whose X-Forwarded-* are trusted"}

Doc = dict[str, Any]

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, and $$ for a literal $
_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines of an env file (comments and blank lines skipped)."""
    pairs: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Fill in compose's `${...}` variables the way `docker compose` does (recursively)."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        given = variables.get(name)
        unset = given is None or (given == "" and op is not None and op.startswith(":"))
        if op is not None and op.endswith("?") and unset:
            raise ValueError(f"compose would stop: {name}: {arg}")
        if op is not None and op.endswith("-") and unset:
            return arg
        return given or ""

    return _INTERPOLATION.sub(one, value)


def compose_raw() -> Doc:
    """compose.yaml as written (YAML merge keys resolved, variables not)."""
    loaded: Doc = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def compose(variables: Mapping[str, str] | None = None) -> Doc:
    """compose.yaml with its variables filled from the example env file (or `variables`)."""
    given = read_env_file(COMPOSE_ENV_EXAMPLE) if variables is None else variables
    filled: Doc = interpolate(compose_raw(), given)
    return filled


def cityhub_services(doc: Doc) -> dict[str, Doc]:
    """The compose services that run the cityhub image (their command starts with `cityhub`)."""
    return {
        name: service
        for name, service in doc["services"].items()
        if service.get("command", [""])[0] == "cityhub"
    }


def environment(service: Doc) -> dict[str, str]:
    """A compose service's `environment`, as a mapping whichever form it was written in."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def dockerfile() -> DockerfileParser:
    """The parsed deploy/Dockerfile."""
    return DockerfileParser(str(DOCKERFILE))


def kubectl() -> str | None:
    """The kubectl binary, if installed (it renders kustomizations offline)."""
    return shutil.which("kubectl")


def kustomize(directory: Path) -> list[Doc]:
    """`kubectl kustomize DIRECTORY`: the rendered manifests."""
    binary = kubectl()
    assert binary is not None
    rendered = subprocess.run(
        [binary, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=KUSTOMIZE_TIMEOUT_S,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def overlay_copy(into: Path) -> Path:
    """A copy of deploy/k8s with the overlay's secrets.env made from its example (the real one is
    never in the repository); returns the copied overlay directory."""
    target = into / "k8s"
    shutil.copytree(K8S, target, ignore=shutil.ignore_patterns("secrets.env"))
    overlay = target / K8S_OVERLAY.relative_to(K8S)
    shutil.copy(overlay / "secrets.env.example", overlay / "secrets.env")
    return overlay


def base_resource_files() -> list[Path]:
    """The files the base kustomization lists under `resources`."""
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())
    return [K8S_BASE / name for name in kustomization["resources"]]


def manifests(path: Path) -> list[Doc]:
    """Every document of a manifest file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(workload name, pod spec) of every Deployment, StatefulSet and Job."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def setting_error(name: str) -> str | None:
    """Why `name` is not an environment variable `Settings` reads (None when it is one)."""
    prefix = Settings.model_config.get("env_prefix", "")
    delimiter = Settings.model_config.get("env_nested_delimiter") or "__"
    if not name.startswith(prefix):
        return f"{name} does not start with {prefix}"
    model: type[BaseModel] = Settings
    path = name[len(prefix) :].lower().split(delimiter)
    for depth, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            return f"{name}: no setting {part!r} in {model.__name__}"
        annotation = field.annotation
        last = depth == len(path) - 1
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if last:
            return f"{name}: {part!r} is a group of settings, not one" if nested else None
        if not nested:
            return f"{name}: {part!r} has no nested settings"
        assert isinstance(annotation, type)
        model = annotation
    return None
