"""Tests for deploy/: the lock covers the code; nothing runs as root or listens publicly."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


COMPOSE_FILES = ("docker-compose.yml", "docker-compose.postgres.yml")


def compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return loaded


@pytest.mark.parametrize(
    ("name", "service"),
    [
        pytest.param(name, service, id=f"{name}:{service}")
        for name in COMPOSE_FILES
        for service in sorted(compose(name)["services"])
    ],
)
def test_compose_services_run_unprivileged_restart_boundedly_and_publish_on_loopback(
    name: str, service: str
) -> None:
    spec = compose(name)["services"][service]
    user = str(spec["user"]).split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    assert spec["cap_drop"] == ["ALL"]
    assert re.fullmatch(r"on-failure:\d+", spec["restart"]), spec["restart"]
    for port in spec.get("ports", []):
        host = port.rsplit(":", 2)[0]
        assert host in (LOOPBACK, "${STUDIO_EXPORTER_BIND:-127.0.0.1}"), port


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_keeps_prometheus_lifecycle_api_and_grafana_admin_closed(name: str) -> None:
    services = compose(name)["services"]
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


def prometheus_config(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return loaded


def test_the_postgres_compose_variant_runs_replicas_of_run_against_a_healthy_database() -> None:
    services = compose("docker-compose.postgres.yml")["services"]
    exporter = services["exporter"]
    assert exporter["deploy"]["replicas"] > 1
    assert "ports" not in exporter, "replicas cannot share a published port"
    assert "container_name" not in exporter, "a fixed name allows one container only"
    assert exporter["command"] == ["run"], "the demo would run one simulator per replica"
    assert exporter["environment"]["STUDIO_EXPORTER_MODE"] == "poll"
    assert exporter["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "exporter-state" not in str(exporter.get("volumes", [])), "the state is in PostgreSQL"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "ports" not in services["postgres"]


def test_the_postgres_compose_variant_keeps_the_password_out_of_the_file() -> None:
    services = compose("docker-compose.postgres.yml")["services"]
    reference = re.compile(r"\$\{STUDIO_EXPORTER_POSTGRES_PASSWORD:\?[^}]+\}")
    url = services["exporter"]["environment"]["STUDIO_EXPORTER_STATE_POSTGRES_URL"]
    (password,) = re.findall(r"^postgresql://[^:/@]+:(.*)@postgres:5432/", url)
    assert reference.fullmatch(password), "the password is interpolated, never written here"
    assert reference.fullmatch(services["postgres"]["environment"]["POSTGRES_PASSWORD"])


@pytest.mark.parametrize("service", ["alertmanager", "tempo", "grafana", "prometheus"])
def test_the_postgres_compose_variant_keeps_the_rest_of_the_stack_as_it_is(service: str) -> None:
    single = compose()["services"][service]
    variant = compose("docker-compose.postgres.yml")["services"][service]
    if service == "prometheus":
        assert single["volumes"][0] == "./prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        assert variant["volumes"][0] == (
            "./prometheus-replicas.yml:/etc/prometheus/prometheus.yml:ro"
        )
        single = {**single, "volumes": single["volumes"][1:]}
        variant = {**variant, "volumes": variant["volumes"][1:]}
    assert variant == single


def test_prometheus_finds_every_compose_replica_through_dns() -> None:
    (job,) = prometheus_config("prometheus-replicas.yml")["scrape_configs"]
    assert re.fullmatch(".*studio.*", job["job_name"])
    assert "static_configs" not in job, "a static target reaches one replica only"
    (discovery,) = job["dns_sd_configs"]
    exporter = compose("docker-compose.postgres.yml")["services"]["exporter"]
    assert discovery["names"] == ["exporter"]
    assert discovery["type"] == "A"
    listen = exporter["environment"]["STUDIO_EXPORTER_WEB_LISTEN_ADDRESS"]
    assert listen.endswith(f":{discovery['port']}")


def replicas_manifest(name: str) -> dict[str, Any]:
    return kubernetes(f"replicas/{name}")


def test_the_replicas_deployment_is_several_pods_rolled_without_a_volume_claim() -> None:
    deployment = replicas_manifest("deployment.yaml")["spec"]
    assert deployment["replicas"] > 1
    assert deployment["strategy"]["type"] == "RollingUpdate"
    pod = deployment["template"]["spec"]
    assert not [volume for volume in pod["volumes"] if "persistentVolumeClaim" in volume]
    (container,) = pod["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["STUDIO_EXPORTER_MODE"]["value"] == "poll"
    anti_affinity = pod["affinity"]["podAntiAffinity"]
    (preferred,) = anti_affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == deployment["template"]["metadata"]["labels"]


def test_the_replicas_deployment_is_hardened_and_probed_as_the_single_one() -> None:
    single = kubernetes("deployment.yaml")["spec"]["template"]["spec"]
    replicas = replicas_manifest("deployment.yaml")["spec"]["template"]["spec"]
    for key in ("securityContext", "automountServiceAccountToken", "terminationGracePeriodSeconds"):
        assert replicas[key] == single[key], key
    (single_container,) = single["containers"]
    (container,) = replicas["containers"]
    for key in ("securityContext", "startupProbe", "livenessProbe", "readinessProbe", "ports"):
        assert container[key] == single_container[key], key


def test_the_replicas_deployment_reads_the_postgres_url_from_the_mounted_secret() -> None:
    pod = replicas_manifest("deployment.yaml")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert "STUDIO_EXPORTER_STATE_POSTGRES_URL" not in env, "the URL belongs in a file"
    assert not any("postgresql://" in str(item) for item in container["env"])
    assert not any("postgres" in argument for argument in container["args"])
    path = Path(env["STUDIO_EXPORTER_STATE_POSTGRES_URL_FILE"]["value"])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    secret = replicas_manifest("secret.yaml")
    assert {"secret": {"name": secret["metadata"]["name"]}} in volume["projected"]["sources"]
    assert path.name in secret["stringData"]


def test_the_example_postgres_secret_cannot_connect_anywhere() -> None:
    (url,) = replicas_manifest("secret.yaml")["stringData"].values()
    parts = urlsplit(url)
    assert parts.scheme == "postgresql"
    assert parts.password == "REPLACE-ME"
    assert parts.hostname is not None
    assert parts.hostname.endswith(".invalid"), "a reserved name that never resolves"


def test_the_disruption_budget_evicts_one_replica_at_a_time() -> None:
    budget = replicas_manifest("poddisruptionbudget.yaml")["spec"]
    labels = replicas_manifest("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"]["matchLabels"] == labels


def test_the_pod_monitor_scrapes_every_replica_not_the_service() -> None:
    monitor = kubernetes("monitoring/podmonitor.yaml")
    assert monitor["kind"] == "PodMonitor"
    labels = replicas_manifest("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = replicas_manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {port["name"] for port in container["ports"]}


def test_prometheus_without_the_operator_discovers_every_pod() -> None:
    (job,) = prometheus_config("prometheus-kubernetes.yml")["scrape_configs"]
    assert re.fullmatch(".*studio.*", job["job_name"])
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod", "role service or endpoints would hide the unready pods"
    labels = replicas_manifest("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    (selector,) = discovery["selectors"]
    assert selector["label"] in {f"{key}={value}" for key, value in labels.items()}
    (container,) = replicas_manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    (keep_port,) = [
        rule
        for rule in job["relabel_configs"]
        if rule["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]
    ]
    assert keep_port["action"] == "keep"
    assert keep_port["regex"] in {port["name"] for port in container["ports"]}
