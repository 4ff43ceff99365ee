"""Run every benchmark in bench/ one after another (each in its own process) and print its output.

`make bench` calls this; `make bench BENCH=decode` (or `python bench/run_all.py decode`) runs the
benchmarks whose file name contains "decode". Benchmarks print medians and ratios against the stock
segment_anything path measured in the same process; nothing here asserts wall time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("bench_*.py"))
    if argv:
        scripts = [p for p in scripts if any(word in p.stem for word in argv)]
    failed = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
        print(f"--- {script.name}: {time.perf_counter() - start:.1f} s, exit {result.returncode}")
        if result.returncode != 0:
            failed.append(script.name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
