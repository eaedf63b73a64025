"""Run every benchmark and print one ``name: value`` line per figure.

    python bench/run.py [--quick] [--db URL] [--only NAME ...]

Each benchmark runs as its own subprocess (a fresh interpreter: no state shared between them,
and a crash in one does not lose the others' figures), with the same --quick and --db. Without
--db each makes its own fresh SQLite file in a temp dir; with a PostgreSQL URL each in turn
drops and recreates the tables of that database. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (script, figures it prints)
BENCHMARKS = [
    ("observation_write.py", ("observation_write_rps", "floor_write_rps", "observation_write_ratio")),
    ("latency.py", ("observation_write_p50_ms", "observation_write_p95_ms",
                    "observation_write_p99_ms", "observation_write_errors")),
    ("board.py", ("board_queries_30", "board_queries_300", "board_ms_30", "board_ms_300")),
    ("sweep.py", ("sweep_ms_100k", "sweep_ms_1m", "sweep_ratio")),
    ("report.py", ("report_ms_year",)),
]
FIGURE = re.compile(r"^[a-z][a-z0-9_]*: \S+$")
TIMEOUT = {True: 300, False: 1500}  # seconds per benchmark, quick / full


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmark suite.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    parser.add_argument("--db", default=None, help="database URL (default: fresh SQLite files)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only these benchmarks (e.g. board sweep)")
    args = parser.parse_args(argv)

    failed = []
    for script, names in BENCHMARKS:
        name = script[:-3]
        if args.only and name not in args.only:
            continue
        path = HERE / script
        command = [sys.executable, str(path)] + (["--quick"] if args.quick else [])
        if args.db:
            command += ["--db", args.db]
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"[run] {script} (load average {load} on {os.cpu_count()} cores)",
              file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            result = subprocess.run(command, stdout=subprocess.PIPE, text=True,
                                    timeout=TIMEOUT[args.quick], cwd=HERE.parent)
        except subprocess.TimeoutExpired:
            print(f"[run] {script} took longer than {TIMEOUT[args.quick]} s: stopped",
                  file=sys.stderr, flush=True)
            failed.append(script)
            continue
        for line in result.stdout.splitlines():
            if FIGURE.match(line.strip()):
                print(line.strip(), flush=True)
        print(f"[run] {script} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        if result.returncode != 0:
            failed.append(script)
    if failed:
        print(f"[run] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
