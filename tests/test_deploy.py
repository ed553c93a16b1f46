"""Tests for deploy/: the lock covers the code; nothing runs as root or listens publicly."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
LOOPBACK = "127.0.0.1"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_distributions() -> set[str]:
    lines = (DEPLOY / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return {_normalized(line.split("==")[0]) for line in lines if line and not line.startswith("#")}


def imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for source in ("exporter", "generated"):
        for path in (ROOT / source).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    ours = {"studio_exporter", "studio_client", "accounts_client"}
    return {name for name in found if name not in ours and name not in sys.stdlib_module_names}


def test_the_image_lock_pins_every_distribution_the_code_imports() -> None:
    providers = packages_distributions()
    locked = locked_distributions()
    missing = {
        module: providers.get(module, ["?"])
        for module in imported_top_level_modules()
        if not any(_normalized(dist) in locked for dist in providers.get(module, []))
    }
    assert missing == {}, "imported but not in deploy/requirements.txt (make lock-image)"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


@pytest.mark.parametrize("service", sorted(compose()["services"]))
def test_compose_services_run_unprivileged_restart_boundedly_and_publish_on_loopback(
    service: str,
) -> None:
    spec = compose()["services"][service]
    user = str(spec["user"]).split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    assert spec["cap_drop"] == ["ALL"]
    assert re.fullmatch(r"on-failure:\d+", spec["restart"]), spec["restart"]
    for port in spec.get("ports", []):
        host = port.rsplit(":", 2)[0]
        assert host in (LOOPBACK, "${STUDIO_EXPORTER_BIND:-127.0.0.1}"), port


def test_compose_keeps_prometheus_lifecycle_api_and_grafana_admin_closed() -> None:
    services = compose()["services"]
    assert not any("lifecycle" in flag for flag in services["prometheus"]["command"])
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION"] == "true"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana


def test_the_image_runs_as_a_numeric_unprivileged_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    assert users == ["10001:10001"]


def kubernetes(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "kubernetes" / name).read_text())
    return loaded


def test_the_deployment_is_one_unprivileged_pod_replaced_not_rolled() -> None:
    deployment = kubernetes("deployment.yaml")["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"] == {"type": "Recreate"}
    pod = deployment["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    env = {item["name"] for item in container["env"]}
    assert "TWILIO_AUTH_TOKEN_FILE" in env
    assert "TWILIO_AUTH_TOKEN" not in env, "the token belongs in a file, not the environment"


def test_the_service_is_cluster_internal() -> None:
    assert kubernetes("service.yaml")["spec"]["type"] == "ClusterIP"


def test_the_systemd_unit_runs_as_a_dynamic_user_on_loopback() -> None:
    unit = (DEPLOY / "systemd" / "studio-exporter.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["DynamicUser"] == "yes"
    assert "User" not in settings
    assert settings["UMask"] == "0077"
    assert settings["Restart"] == "on-failure"
    assert "TWILIO_AUTH_TOKEN_FILE=%d/twilio-auth-token" in unit
    assert "STUDIO_EXPORTER_WEB_LISTEN_ADDRESS=127.0.0.1:9911" in unit
