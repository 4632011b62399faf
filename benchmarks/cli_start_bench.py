"""CLI start benchmark: wall time of `fapiao --help` beside `python -c pass` (the interpreter's own
start), goal: under 0.3 s. Also `fapiao invoice --help` (the group built from the lifecycle's
declaration) and the time of `import api.cli.main` alone.

Uses hyperfine when it is on PATH; otherwise runs the commands interleaved (one of each per
round, so load on a shared machine falls on all of them alike) and prints medians.
With --baseline DIR (a checkout of another commit, e.g. `git worktree add /tmp/base main`), the
same commands also run with that tree first on PYTHONPATH, interleaved with ours: before/after in
one run.
Usage: python benchmarks/cli_start_bench.py [--runs 30] [--quick] [--baseline DIR] [--json]
(--json: the last line is the row for benchmarks/run_all.py)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import api.cli.main": [sys.executable, "-c", "import api.cli.main"],
    "fapiao --help": [str(BIN / "fapiao"), "--help"],
    "fapiao invoice --help": [str(BIN / "fapiao"), "invoice", "--help"],
}
GOAL_SECONDS = 0.3
CWD = tempfile.gettempdir()  # not the checkout: `python -c` puts the working folder on sys.path


def _env(pythonpath: str | None = None) -> dict[str, str]:
    env = dict(os.environ, COLUMNS="100", TERM="dumb")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def _interleaved(runs: int, baseline: str | None) -> dict[str, list[float]]:
    plan = [(name, argv, None) for name, argv in COMMANDS.items()]
    if baseline:
        plan += [
            (f"{name} [baseline]", argv, baseline)
            for name, argv in COMMANDS.items()
            if name != "python -c pass"
        ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in plan}
    for _ in range(2):  # warm the page cache and the bytecode caches
        for _, argv, path in plan:
            subprocess.run(argv, capture_output=True, env=_env(path), check=True, cwd=CWD)
    for _ in range(runs):
        for name, argv, path in plan:
            start = time.perf_counter()
            subprocess.run(argv, capture_output=True, env=_env(path), check=True, cwd=CWD)
            times[name].append(time.perf_counter() - start)
    return times


def _hyperfine(runs: int, exe: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "h.json"
        argv = [exe, "-N", "--warmup", "2", "--runs", str(runs), "--export-json", str(out)]
        for name, cmd in COMMANDS.items():
            argv += ["-n", name, " ".join(cmd)]
        subprocess.run(argv, capture_output=True, env=_env(), check=True, cwd=CWD)
        results = json.loads(out.read_text())["results"]
    return {r["command"]: r["median"] for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--baseline", help="another checkout to time beside this one")
    parser.add_argument("--quick", action="store_true", help="10 runs instead of --runs")
    parser.add_argument("--json", action="store_true", help="end with the row as JSON")
    args = parser.parse_args()
    if args.quick:
        args.runs = 10
    load = os.getloadavg()[0]
    hyperfine = shutil.which("hyperfine")
    if hyperfine and not args.baseline:
        medians = _hyperfine(args.runs, hyperfine)
        how = "hyperfine"
    else:
        medians = {
            k: statistics.median(v) for k, v in _interleaved(args.runs, args.baseline).items()
        }
        how = f"interleaved subprocess runs, median of {args.runs}"
    base = medians["python -c pass"]
    print(f"CLI start ({how}; load average {os.getloadavg()[0]:.2f})")
    for name, seconds in medians.items():
        print(f"  {name:34} {seconds * 1000:7.1f} ms  {seconds / base:5.1f}x python -c pass")
    help_s = medians["fapiao --help"]
    verdict = "holds" if help_s < GOAL_SECONDS else "MISSED"
    print(f"  goal fapiao --help < {GOAL_SECONDS} s: {verdict}")
    if args.json:
        row = {
            "path": "CLI start (fapiao --help)",
            "ours": round(help_s, 4),
            "unit": "s",
            "reference": round(base, 4),
            "reference_label": "python -c pass",
            "ratio": round(help_s / base, 2),
            "goal": f"< {GOAL_SECONDS} s",
            "pass": help_s < GOAL_SECONDS,
            "extra": {k: round(v, 4) for k, v in medians.items()},
        }
        print(json.dumps({"bench": "cli_start_bench", "load": load, "rows": [row]}))


if __name__ == "__main__":
    main()
