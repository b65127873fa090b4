"""Every variable the deploy files give cityhub is one it reads, with a value it accepts: a
renamed or misspelt setting fails here instead of being ignored in production."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import SecretStr

from services.cli import app
from shared.auth import resolve_jwt_secret
from shared.errors import ConfigError
from shared.settings import Settings
from tests.deploy.files import (
    COMPOSE_ENV_EXAMPLE,
    K8S_BASE,
    K8S_OVERLAY,
    OTHER_VARIABLES,
    base_resource_files,
    cityhub_services,
    compose,
    dockerfile,
    environment,
    manifests,
    pod_specs,
    read_env_file,
    setting_error,
)


def _cli_variables() -> set[str]:
    """Variables `cityhub` options read (e.g. the simulators' CITYHUB_SIM_KEY)."""

    def walk(command: Any) -> Iterator[str]:  # typer's click commands and groups
        for param in command.params:
            envvar = param.envvar
            if isinstance(envvar, str):
                yield envvar
            elif envvar:
                yield from envvar
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)

    return set(walk(typer.main.get_command(app)))


def _compose_variables() -> dict[str, dict[str, str]]:
    """Each cityhub compose service's environment, the image's ENV under it."""
    image = dockerfile().envs
    return {
        f"compose {name}": {**image, **environment(service)}
        for name, service in cityhub_services(compose()).items()
    }


def _kubernetes_variables() -> dict[str, dict[str, str]]:
    """Each cityhub container's environment: ConfigMap, Secret example, `env` values."""
    shared = {
        **dockerfile().envs,
        **read_env_file(K8S_BASE / "cityhub.env"),
        **read_env_file(K8S_OVERLAY / "secrets.env.example"),
    }
    found = {}
    for path in base_resource_files():
        for name, spec in pod_specs(manifests(path)):
            for container in spec["containers"]:
                if container.get("command", [""])[0] != "cityhub":
                    continue
                own = {e["name"]: e.get("value", f"from-{name}") for e in container.get("env", [])}
                found[f"kubernetes {name}"] = {**shared, **own}
    return found


def _problems(variables: dict[str, str], readers: set[str]) -> list[str]:
    problems = []
    for name in variables:
        if name in OTHER_VARIABLES or name in readers:
            continue
        if (why := setting_error(name)) is not None:
            problems.append(why)
    return problems


def test_every_variable_set_for_cityhub_is_read_by_it() -> None:
    readers = _cli_variables()
    everywhere = {**_compose_variables(), **_kubernetes_variables()}
    assert len(everywhere) >= 8  # 4 services + migrate + jobs in compose, 5 in Kubernetes
    problems = {where: p for where, env in everywhere.items() if (p := _problems(env, readers))}
    assert problems == {}


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("CITYHUB_LIVE__QUEUE_MAX", True),
        ("CITYHUB_KPI__WEIGHTS__CLOSE", True),
        ("CITYHUB_JWT_SECRET", True),
        ("CITYHUB_DISPATCH__MERGE_DISTANCE", False),  # the setting is merge_distance_m
        ("CITYHUB_KPI__WEIGHTS", False),  # a group, not one value
        ("CITYHUB_TIMEZONE__NAME", False),
        ("CITYHUB_DATABASE", False),
        ("DATABASE_URL", False),
    ],
)
def test_the_name_check_knows_real_settings(name: str, accepted: bool) -> None:
    assert (setting_error(name) is None) is accepted


def test_every_environment_makes_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    everywhere = {**_compose_variables(), **_kubernetes_variables()}
    for where, variables in everywhere.items():
        with monkeypatch.context() as env:
            for name in [n for n in os.environ if n.startswith("CITYHUB_")]:
                env.delenv(name)
            for name, value in variables.items():
                env.setenv(name, value)
            settings = Settings()  # raises naming the bad value
        assert settings.http_port == 8000, where
        if "simulate" in where:
            continue
        assert settings.database_url is not None, where
        assert settings.redis_url is not None, where
        assert settings.http_host == "0.0.0.0", where


@pytest.mark.parametrize("example", [COMPOSE_ENV_EXAMPLE, K8S_OVERLAY / "secrets.env.example"])
def test_an_unedited_example_cannot_start_a_service(example: Path) -> None:
    """The examples' signing secret is a placeholder the services refuse (shared/auth.py)."""
    secret = read_env_file(example)["CITYHUB_JWT_SECRET"]
    with pytest.raises(ConfigError, match="placeholder"):
        resolve_jwt_secret(Settings(jwt_secret=SecretStr(secret), database_url="postgresql://x/y"))
