#!/usr/bin/env python3
"""Fuzz the generator with many VM documents (tests/support/fuzzdocs.py's strategies and
property): valid and corrupted documents of every hypervisor, as data and as JSON text.

Run: .venv/bin/python bench/fuzz.py [--examples 100000] [--seed N]. Prints how many examples
validated (and generated a complete tree), how many were refused and where, and every failure
(a traceback, a document that validated and did not generate, a partial tree) with the
document that caused it; exit 1 when there was one.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "generator"))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from support.fuzzdocs import (  # noqa: E402
    Tally,
    check,
    corrupted_documents,
    document_texts,
    documents,
)

KINDS = {"document": documents(), "corrupted": corrupted_documents(), "text": document_texts()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=None, help="default: a random seed (printed)")
    ap.add_argument("--max-failures", type=int, default=20)
    args = ap.parse_args()
    base = random.randrange(2**32) if args.seed is None else args.seed
    out = Path(tempfile.mkdtemp(prefix="microvm-fuzz-")) / "out"
    tallies = {kind: Tally() for kind in KINDS}
    failures: list[tuple[str, Any, str]] = []
    per_kind = args.examples // len(KINDS)
    start = time.process_time()
    wall = time.monotonic()

    def runner_for(kind: str, strategy: Any) -> Any:
        tally = tallies[kind]

        @seed(base + list(KINDS).index(kind))
        @settings(max_examples=per_kind, deadline=None, database=None, derandomize=False,
                  phases=[p for p in settings.default.phases if p.name == "generate"],
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def run(doc: Any) -> None:
            try:
                check(doc, out, tally)
            except Exception:  # a finding, reported below
                if len(failures) < args.max_failures:
                    failures.append((kind, doc, traceback.format_exc()))

        return run

    for kind, strategy in KINDS.items():
        runner_for(kind, strategy)()

    cpu = time.process_time() - start
    total = sum(t.valid + t.refused for t in tallies.values())
    print(f"fuzz: {total} examples (seed {base}) in {cpu:.1f} s CPU, " +
          f"{time.monotonic() - wall:.1f} s wall, {1000 * cpu / max(total, 1):.2f} ms each")
    for kind, t in tallies.items():
        print(f"  {kind:<10} {t.valid:>7} validated and generated, {t.refused:>7} refused")
    problems: dict[str, int] = {}
    for t in tallies.values():
        for key, n in t.problems.items():
            problems[key] = problems.get(key, 0) + n
    top = sorted(problems.items(), key=lambda kv: -kv[1])[:15]
    print("  most refused options: " + ", ".join(f"{k} {n}" for k, n in top))
    print(f"  failures: {len(failures)}" + (" (the first ones)" if failures else ""))
    for kind, doc, tb in failures:
        print(f"--- {kind}: {json.dumps(doc, ensure_ascii=True)[:2000]}\n{tb}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
