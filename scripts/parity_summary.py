"""Per-op, per-backend parity table from a TDS_PARITY_LOG file (written by tests/parity.py).

    TDS_PARITY_LOG=/tmp/parity.jsonl python -m pytest -q tests/test_temporal_max_diff.py ...
    python scripts/parity_summary.py /tmp/parity.jsonl

For each (op, backend, dtype): how many checks ran, the largest error of the fused result against
the float64 reference, the plain-PyTorch error of that same check, and the worst ratio fused / plain
over all checks whose plain error is not ~0 (the tests require fused <= 2 x plain + atol).
"""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict

BACKENDS = ("cuda", "triton", "cpu", "reference")


def op_of(test: str) -> str:
    m = re.search(r"tests/test_([a-z_]+?)(?:_reference)?\.py", test)
    return m.group(1) if m else test


def backend_of(rec: dict) -> str:
    first = rec["name"].split(" ")[0]
    if first in BACKENDS:
        return first
    ident = rec["test"].split("::")[-1]
    for b in BACKENDS:
        if re.search(rf"(^|[_\[\-]){b}($|[_\]\-])", ident):
            return b
    # no backend named: the test runs the default dispatch (the model tests: the C++ kernels here)
    return "default"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", help="the JSON-lines file TDS_PARITY_LOG pointed to")
    args = ap.parse_args()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    with open(args.log) as f:
        for line in f:
            rec = json.loads(line)
            groups[(op_of(rec["test"]), backend_of(rec), rec["dtype"])].append(rec)
    print("| op | backend | dtype | checks | max fused err | plain err (same check) | worst fused / plain |")
    print("|---|---|---|---|---|---|---|")
    for (op, backend, dtype), recs in sorted(groups.items()):
        worst = max(recs, key=lambda r: r["fused"])
        ratios = [r["fused"] / r["plain"] for r in recs if r["plain"] > 1e-6 * max(r["scale"], 1e-30)]
        ratio = f"{max(ratios):.2f}" if ratios else "– (plain ≈ exact)"
        print(f"| {op} | {backend} | {dtype} | {len(recs)} | {worst['fused']:.2e} | {worst['plain']:.2e} | {ratio} |")


if __name__ == "__main__":
    main()
