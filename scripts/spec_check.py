"""spec-check: does openapi/ still agree with a Twilio spec file, and what changed in Twilio's?

    python scripts/spec_check.py --spec twilio_studio_v2.json [--baseline OLD.json]
        [--v2010 twilio_api_v2010.json --v2010-baseline OLD.json] [--report FILE]

Runs the conformance check of tests/test_conformance.py (openapi/ against ``--spec``) and, given
the Twilio spec the project last agreed with (``--baseline``), the spec-diff of Twilio's two
versions in the operations the exporter uses; ``--v2010`` with ``--v2010-baseline`` diffs the
v2010 API's account operations the same way. The report (also written to ``--report``, as
Markdown for an issue) ends with a verdict line:

    verdict: none       nothing differs
    verdict: additive   Twilio only added things (fields, parameters, operations, values)
    verdict: breaking   something was removed, retyped or moved

Exit status: 0 none, 1 additive or breaking, 2 error (unreadable file, bad arguments).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from studio_exporter.spec.conformance import MISSING_FROM_OURS, disagreements
from studio_exporter.spec.specdiff import (
    ACCOUNT_OPERATIONS,
    STUDIO_OPERATIONS,
    Change,
    SpecError,
    diff_specs,
    format_report,
    load_spec,
)

ROOT = Path(__file__).resolve().parents[1]
OURS = ROOT / "openapi" / "studio_v2.yaml"
OURS_V2010 = ROOT / "openapi" / "api_v2010.yaml"
#: Spec-diff kinds that only add to what Twilio serves: the client tolerates them.
ADDITIVE_KINDS = frozenset({"operation added", "parameter added", "field added"})


def _additive_change(change: Change) -> bool:
    if change.kind in ADDITIVE_KINDS:
        return True
    # A status that gains a known value: ours is a plain string with x-known-values.
    if change.old is None or change.new is None or not change.kind.endswith("retyped"):
        return False
    return _only_values_grew(change.old, change.new)


def _only_values_grew(old: str, new: str) -> bool:
    def split(text: str) -> tuple[str, set[str]]:
        shape, _, values = text.partition(" values=[")
        return shape, set(values.rstrip("]").split(",")) if values else set()

    old_shape, old_values = split(old)
    new_shape, new_values = split(new)
    return old_shape == new_shape and old_values < new_values


def check(
    spec: Path,
    baseline: Path | None = None,
    v2010: Path | None = None,
    v2010_baseline: Path | None = None,
    ours: Path = OURS,
) -> tuple[str, str]:
    """The report (Markdown) and the verdict: ``none``, ``additive`` or ``breaking``."""
    theirs = load_spec(spec)
    problems = disagreements(theirs, load_spec(ours))
    if v2010 is not None:
        # The account operations (subaccounts) are checked against Twilio's v2010 spec too.
        problems += disagreements(load_spec(v2010), load_spec(OURS_V2010), ACCOUNT_OPERATIONS)
    sections = ["## Conformance: openapi/ against " + spec.name, ""]
    if problems:
        sections += ["```text", *problems, "```"]
    else:
        sections.append("openapi/ agrees with this spec in every operation the exporter uses.")
    changes: list[Change] = []
    diffs = [(baseline, spec, STUDIO_OPERATIONS), (v2010_baseline, v2010, ACCOUNT_OPERATIONS)]
    for old_path, new_path, operations in diffs:
        if old_path is None or new_path is None:
            continue
        old, new = load_spec(old_path), load_spec(new_path)
        found = diff_specs(old, new, operations)
        changes += found
        report = format_report(found, old_path.name, new_path.name)
        sections += ["", f"## Spec-diff: {old_path.name} -> {new_path.name}", ""]
        sections += ["```text", report.rstrip("\n"), "```"]
    if changes:
        # Twilio's own change explains the disagreements it causes: judge the change.
        additive = all(_additive_change(change) for change in changes)
    else:
        additive = all(MISSING_FROM_OURS in problem for problem in problems)
    verdict = "additive" if additive else "breaking"
    if not problems and not changes:
        verdict = "none"
    sections += ["", f"verdict: {verdict}"]
    return "\n".join(sections) + "\n", verdict


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="spec-check", description=__doc__.split("\n")[0])
    parser.add_argument("--spec", type=Path, required=True, help="Twilio's Studio v2 spec")
    parser.add_argument("--baseline", type=Path, help="the Studio spec last agreed with")
    parser.add_argument("--v2010", type=Path, help="Twilio's v2010 API spec")
    parser.add_argument("--v2010-baseline", type=Path, help="the v2010 spec last agreed with")
    parser.add_argument("--report", type=Path, help="also write the report to this file")
    parser.add_argument("--ours", type=Path, default=OURS, help=argparse.SUPPRESS)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code == 0 else 2
    if (args.v2010 is None) != (args.v2010_baseline is None):
        print("spec-check: --v2010 and --v2010-baseline go together", file=sys.stderr)
        return 2
    try:
        report, verdict = check(
            args.spec, args.baseline, args.v2010, args.v2010_baseline, args.ours
        )
    except (OSError, SpecError) as error:
        print(f"spec-check: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(report)
    if args.report is not None:
        args.report.write_text(report, encoding="utf-8")
    return 0 if verdict == "none" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
