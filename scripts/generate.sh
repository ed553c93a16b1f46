#!/usr/bin/env bash
# Regenerate every client in generated/ from its spec in openapi/ with the pinned
# openapi-python-client and ruff from .venv: studio_client from studio_v2.yaml (Studio v2) and
# accounts_client from api_v2010.yaml (the v2010 accounts). Usage: bash scripts/generate.sh
# [OUTPUT_PARENT_DIR] (default: generated/). Each old package is deleted first so removed
# operations and models disappear; the output is byte-identical from run to run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_bin="$root/.venv/bin"
out_parent="${1:-$root/generated}"
# package spec config, one client a line
clients=(
    "studio_client studio_v2.yaml generator-config.yaml"
    "accounts_client api_v2010.yaml accounts-generator-config.yaml"
)

for tool in openapi-python-client ruff; do
    if [[ ! -x "$venv_bin/$tool" ]]; then
        echo "generate.sh: $venv_bin/$tool is missing; run 'make venv' first" >&2
        exit 1
    fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The generator's post-hooks call plain `ruff`: put the pinned one first on PATH. A fixed
# locale and no bytecode keep the output independent of the caller's environment.
export PATH="$venv_bin:$PATH" LC_ALL=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
mkdir -p "$out_parent"
for client in "${clients[@]}"; do
    read -r package spec config <<<"$client"
    "$venv_bin/openapi-python-client" generate \
        --path "$root/openapi/$spec" \
        --config "$root/openapi/$config" \
        --meta none \
        --fail-on-warning \
        --output-path "$work/$package" >"$work/$package.log" 2>&1 || {
        cat "$work/$package.log" >&2
        exit 1
    }
    # The generator reports post-hook failures as errors but can still exit 0: check the log.
    if grep -qiE "error|warning|skipping" "$work/$package.log"; then
        cat "$work/$package.log" >&2
        exit 1
    fi
    rm -rf "${out_parent:?}/$package"
    mv "$work/$package" "$out_parent/$package"
    echo "wrote ${out_parent#"$root"/}/$package"
done
