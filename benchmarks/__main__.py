"""Run benchmarks and print one JSON line per figure.

    python -m benchmarks                 every benchmark module in this folder
    python -m benchmarks NAME [NAME...]  only those (module names, e.g. harness_job_overhead)
    python -m benchmarks --list          what there is

A benchmark is a module here with `run() -> Iterable[dict]`; each dict is one figure with at
least `name`, `value`, `unit` and `compared_with` (what the figure should be read against).
The runner adds the machine facts and a timestamp, prints each line as it comes, and appends it
to benchmarks/results/<date>.jsonl (ignored by git).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIRED = ("name", "value", "unit", "compared_with")


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def machine() -> dict:
    """Facts that make a figure comparable: cores, memory, CPU model, Python."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "system": platform.system(),
    }


def check(figure: dict, source: str) -> dict:
    missing = [k for k in REQUIRED if k not in figure]
    if missing:
        raise ValueError(f"benchmark {source} gave a figure without {missing}: {figure}")
    return figure


def run(names: Iterable[str], results: Path) -> int:
    facts = machine()
    results.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with results.open("a") as out:
        for name in names:
            module = importlib.import_module(f"benchmarks.{name}")
            for figure in module.run():
                line = {
                    "benchmark": name,
                    **check(figure, name),
                    "machine": facts,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                text = json.dumps(line, sort_keys=False)
                print(text, flush=True)
                out.write(text + "\n")
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--results",
        type=Path,
        default=HERE / "results" / f"{time.strftime('%Y-%m-%d')}.jsonl",
        help="JSON lines file the figures are appended to (default: results/<date>.jsonl)",
    )
    args = parser.parse_args(argv)
    names = available()
    if args.list:
        print("\n".join(names))
        return 0
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; there are: {', '.join(names)}", file=sys.stderr)
        return 2
    count = run(args.names or names, args.results)
    print(f"{count} figure(s) appended to {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
