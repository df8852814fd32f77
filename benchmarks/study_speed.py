"""The study with and without cohort training, side by side, on the bundled survey.

    python benchmarks/study_speed.py            # the default study: 10 seeds, sizes 25,50,100,200,all
    python benchmarks/study_speed.py --quick    # 2 seeds, sizes 25,100

Each variant runs --repeats times (median reported) in one process per run, seeds in
parallel over --workers processes as `warmstart study` does by default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from warmstart.study import run_study


def timed(cohort: bool, sizes: str, seeds: int, workers: int | None) -> float:
    start = time.perf_counter()
    run_study("salaries", target="salary_in_usd", source=["company_location=US"],
              target_rows=["company_location=@europe"], sizes=sizes, seeds=seeds, cohort=cohort, workers=workers)
    seconds = time.perf_counter() - start
    print(f"{'cohort' if cohort else 'separate'}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes, seeds = ("25,100", 2) if args.quick else ("25,50,100,200,all", 10)
    rows = []
    for cohort in (False, True):
        seconds = statistics.median(timed(cohort, sizes, seeds, args.workers) for _ in range(args.repeats))
        rows.append({"variant": "cohort" if cohort else "separate", "seconds": round(seconds, 1)})
    rows[1]["speedup"] = round(rows[0]["seconds"] / rows[1]["seconds"], 2)
    if args.json:
        print(json.dumps({"sizes": sizes, "seeds": seeds, "results": rows}))
    else:
        for r in rows:
            print(f"{r['variant']:<9} {r['seconds']:>7.1f} s" + (f"  x{r['speedup']}" if "speedup" in r else ""))


if __name__ == "__main__":
    main()
