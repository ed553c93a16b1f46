#!/usr/bin/env bash
# Regenerate generated/studio_client from openapi/studio_v2.yaml with the pinned
# openapi-python-client and ruff from .venv. Usage: bash scripts/generate.sh [OUTPUT_PARENT_DIR]
# (default: generated/). The old package is deleted first so removed operations and models
# disappear; the output is byte-identical from run to run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_bin="$root/.venv/bin"
out_parent="${1:-$root/generated}"
package=studio_client

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
"$venv_bin/openapi-python-client" generate \
    --path "$root/openapi/studio_v2.yaml" \
    --config "$root/openapi/generator-config.yaml" \
    --meta none \
    --fail-on-warning \
    --output-path "$work/$package" >"$work/generator.log" 2>&1 || {
    cat "$work/generator.log" >&2
    exit 1
}
# The generator reports post-hook failures as errors but can still exit 0: check the log.
if grep -qiE "error|warning|skipping" "$work/generator.log"; then
    cat "$work/generator.log" >&2
    exit 1
fi

mkdir -p "$out_parent"
rm -rf "${out_parent:?}/$package"
mv "$work/$package" "$out_parent/$package"
echo "wrote ${out_parent#"$root"/}/$package"
