"""Every row of the performance table in one run, each beside the reference it is judged by.

Runs the benchmarks one after another (never two at once: they would share the cores), each
with `--json`, and prints one table: the path, our figure, the reference measured in the same
run of that benchmark, the ratio, the goal and whether it holds, with the machine's load before
each benchmark. A benchmark that fails or prints no rows is a FAIL row, never a silent gap.

Usage: python benchmarks/run_all.py [--quick] [--json] [--only NAME ...] [--out FILE]
                                    [--admin-url postgresql://root@127.0.0.1:5432/postgres]
Exit status: 0 when every goal holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Bench:
    """One benchmark script and the table rows it answers for."""

    name: str
    rows: tuple[str, ...]
    timeout: int  # seconds, full size
    needs_postgres: bool = True


# In the order of the table.
BENCHES = (
    Bench("group_commit_bench", ("single command, 8 concurrent clients",), 900),
    Bench("batch_issue_bench", ("batched issuance, 100 per save",), 900),
    Bench("catch_up_bench", ("projection catch-up",), 900),
    Bench("read_bench", ("GET one invoice, 32 connections",), 900),
    Bench("reconcile_bench", ("reconciliation, 1M rows",), 1800),
    Bench(
        "evidence_bench",
        ("evidence bundle export, 10k invoices", "evidence bundle verify, 10k invoices"),
        1800,
    ),
    Bench("cli_start_bench", ("CLI start (fapiao --help)",), 300, needs_postgres=False),
)


def run_bench(bench: Bench, quick: bool, admin_url: str | None) -> dict[str, Any]:
    """Run one benchmark; its own lines go to stderr as they come, its JSON line is returned."""
    script = HERE / f"{bench.name}.py"
    load = os.getloadavg()[0]
    started = time.monotonic()
    if not script.exists():
        return _failed(bench, load, f"{script.name} is missing", 0.0)
    argv = [sys.executable, str(script), "--json"]
    if quick:
        argv.append("--quick")
    if admin_url and bench.needs_postgres:
        argv += ["--admin-url", admin_url]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), _pythonpath()])))
    last = ""
    try:
        proc = subprocess.Popen(  # noqa: S603 - our own scripts, fixed arguments
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert proc.stdout is not None
        deadline = started + (bench.timeout // 3 if quick else bench.timeout)
        for text in proc.stdout:
            if text.strip():
                last = text.strip()
                if not last.startswith("{"):
                    print(f"  | {text.rstrip()}", file=sys.stderr, flush=True)
            if time.monotonic() > deadline:
                proc.kill()
                break
        code = proc.wait()
    except OSError as e:
        return _failed(bench, load, f"could not start: {e}", time.monotonic() - started)
    elapsed = time.monotonic() - started
    if code != 0:
        return _failed(bench, load, f"exited with status {code}", elapsed)
    try:
        result: dict[str, Any] = json.loads(last)
        rows = result["rows"]
    except (ValueError, KeyError, TypeError):
        return _failed(bench, load, "its last line is not the JSON result", elapsed)
    if not rows:
        return _failed(bench, load, "it printed no rows", elapsed)
    result.update(load_before=load, seconds=round(elapsed, 1), error=None)
    return result


def _pythonpath() -> str:
    return os.environ.get("PYTHONPATH", "")


def _failed(bench: Bench, load: float, why: str, elapsed: float) -> dict[str, Any]:
    rows = [
        {
            "path": path,
            "ours": None,
            "unit": "",
            "reference": None,
            "reference_label": "",
            "ratio": None,
            "goal": "",
            "pass": False,
            "extra": {},
        }
        for path in bench.rows
    ]
    return {
        "bench": bench.name,
        "load_before": load,
        "seconds": round(elapsed, 1),
        "error": why,
        "rows": rows,
    }


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
        return f"{text} {unit}".strip()
    return str(value)


def print_table(results: list[dict[str, Any]]) -> bool:
    """The table, one line per row; True when every row's goal holds."""
    header = ("path", "ours", "reference (same run)", "ratio", "goal", "")
    lines = [header]
    all_pass = True
    for result in results:
        for row in result["rows"]:
            ok = bool(row.get("pass"))
            all_pass = all_pass and ok
            ref = row.get("reference")
            ref_text = "-" if ref is None else f"{_num(ref)} {row.get('reference_label', '')}"
            ratio = row.get("ratio")
            lines.append(
                (
                    str(row.get("path", "?")),
                    _num(row.get("ours"), row.get("unit", "")),
                    ref_text.strip(),
                    "-" if ratio is None else f"{ratio:.2f}x",
                    str(row.get("goal", "")),
                    "PASS" if ok else "FAIL",
                )
            )
    widths = [min(max(len(r[i]) for r in lines), 48) for i in range(len(header))]
    for i, r in enumerate(lines):
        print("  ".join(cell[:48].ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for result in results:
        extra = f"; {result['error']}" if result.get("error") else ""
        print(
            f"  {result['bench']}: load {result['load_before']:.2f} before, "
            f"{result['seconds']:.0f} s{extra}"
        )
    return all_pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--json", action="store_true", help="end with all results as JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON results to this file")
    parser.add_argument(
        "--only", nargs="+", choices=[b.name for b in BENCHES], help="run only these"
    )
    parser.add_argument("--admin-url", help="PostgreSQL server to create benchmark databases on")
    args = parser.parse_args()
    chosen = [b for b in BENCHES if not args.only or b.name in args.only]
    print(
        f"fapiao-ledger benchmarks ({'quick' if args.quick else 'full'}): {len(chosen)} "
        f"benchmarks, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    started = time.monotonic()
    results = []
    for bench in chosen:
        print(f"- {bench.name} ...", file=sys.stderr, flush=True)
        results.append(run_bench(bench, args.quick, args.admin_url))
    print()
    all_pass = print_table(results)
    print(f"\ntotal {time.monotonic() - started:.0f} s; every goal holds: {all_pass}")
    summary = {
        "when": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "cores": os.cpu_count(),
        "all_pass": all_pass,
        "results": results,
    }
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
