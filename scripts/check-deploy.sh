#!/usr/bin/env bash
# Every file in deploy/ through its validator, without a container engine or a cluster:
# hadolint (Dockerfile), kubernetes-validate (manifests, offline schemas), JSON schemas for the
# Prometheus Operator's resources, the compose-spec schema, promtool and amtool, and
# systemd-analyze verify. The tools come from the dev extra (.venv) and the system packages
# that .ci/run installs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { printf '== %s\n' "$*"; }

step "hadolint deploy/Dockerfile"
"$BIN/hadolint" deploy/Dockerfile

step "kubernetes-validate deploy/kubernetes/*.yaml deploy/kubernetes/replicas/*.yaml"
"$BIN/kubernetes-validate" --strict --quiet deploy/kubernetes/*.yaml \
  deploy/kubernetes/replicas/*.yaml

step "Prometheus Operator resources against deploy/kubernetes/schemas"
"$BIN/check-jsonschema" --schemafile deploy/kubernetes/schemas/podmonitor.schema.json \
  deploy/kubernetes/monitoring/podmonitor.yaml
"$BIN/check-jsonschema" --schemafile deploy/kubernetes/schemas/prometheusrule.schema.json \
  deploy/kubernetes/monitoring/prometheusrule.yaml
"$BIN/python" scripts/prometheusrule.py --check
"$BIN/python" - "$work/prometheusrule.rules.yml" <<'PY'
import sys

import yaml

with open("deploy/kubernetes/monitoring/prometheusrule.yaml", encoding="utf-8") as file:
    spec = yaml.safe_load(file)["spec"]
with open(sys.argv[1], "w", encoding="utf-8") as out:
    yaml.safe_dump(spec, out, sort_keys=False)
PY
promtool check rules "$work/prometheusrule.rules.yml"

step "compose files against the compose-spec schema"
"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml \
  deploy/docker-compose.postgres.yml

step "promtool check config deploy/prometheus.yml deploy/prometheus-replicas.yml"
# Their rule files resolve through deploy/rules.
promtool check config deploy/prometheus.yml
promtool check config deploy/prometheus-replicas.yml

step "deploy/prometheus-kubernetes.yml: its discovery against a schema, the rest through promtool"
# Debian's promtool is built without Kubernetes discovery and rejects kubernetes_sd_configs:
# the block goes through a schema of our own, and promtool checks the file without it (the
# job, its relabelling).
"$BIN/check-jsonschema" --schemafile deploy/kubernetes/schemas/prometheus-kubernetes.schema.json \
  deploy/prometheus-kubernetes.yml
"$BIN/python" - "$work/prometheus-kubernetes.yml" <<'PY'
import sys

import yaml

with open("deploy/prometheus-kubernetes.yml", encoding="utf-8") as file:
    config = yaml.safe_load(file)
for job in config["scrape_configs"]:
    del job["kubernetes_sd_configs"]
with open(sys.argv[1], "w", encoding="utf-8") as out:
    yaml.safe_dump(config, out, sort_keys=False)
PY
promtool check config "$work/prometheus-kubernetes.yml"

step "amtool check-config deploy/alertmanager.yml"
amtool check-config deploy/alertmanager.yml

step "systemd-analyze verify deploy/systemd/studio-exporter.service"
# In a root of its own: the host's units, and a stand-in for the installed program (verify
# checks that ExecStart= exists). Any message, even a warning about an unknown key, fails.
mkdir -p "$work/root/opt/studio-exporter/bin" "$work/root/etc/systemd/system" \
  "$work/root/usr/lib/systemd"
cp -r /usr/lib/systemd/system "$work/root/usr/lib/systemd/"
printf '#!/bin/sh\n' > "$work/root/opt/studio-exporter/bin/studio-exporter"
chmod +x "$work/root/opt/studio-exporter/bin/studio-exporter"
cp deploy/systemd/studio-exporter.service "$work/root/etc/systemd/system/"
messages=$(systemd-analyze verify --root="$work/root" \
  /etc/systemd/system/studio-exporter.service 2>&1) || { echo "$messages"; exit 1; }
if [ -n "$messages" ]; then
  echo "$messages"
  exit 1
fi
echo "every deploy file is valid"
