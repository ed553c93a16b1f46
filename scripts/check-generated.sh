#!/usr/bin/env bash
# Fail (exit 1, printing the diff) when generated/ differs from what openapi/ generates now:
# changed, new (untracked) or removed files alike, in every client. The working tree is never
# modified.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

bash "$root/scripts/generate.sh" "$work" >/dev/null

# Compare whole trees, not git's view: a stale file left in generated/ (tracked or not), or a
# whole package no spec generates any more, is a difference too. Caches that tools drop next to
# the code are not part of the output.
cd "$root"
if diff -ruN --exclude=__pycache__ --exclude='*.pyc' --exclude=.ruff_cache --exclude=.mypy_cache \
    generated "$work" >"$work.diff.txt"; then
    echo "generated/ is up to date with openapi/"
    rm -f "$work.diff.txt"
else
    cat "$work.diff.txt"
    rm -f "$work.diff.txt"
    echo >&2
    echo "generated/ is stale: openapi/ changed without regenerating. Run 'make generate' and commit generated/." >&2
    exit 1
fi
