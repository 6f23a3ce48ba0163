"""Wall time per stage of a `make study` log (the tables of RESULTS.md, "Demo profile").

    date +%s > start; make study > study.log 2>&1; date +%s > end
    python benchmarks/stage_times.py study.log $(cat start) $(cat end)

A stage's time runs from its first timestamped log line to the next stage's first (DVC's
and Python's start-up included); "install + Prefect start" from ``start`` to the first
stage's first line; the last group ends at ``end``. Stages are grouped as in RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re

GROUPS = (
    ("synth", ("synth",)),
    ("ingest + difficulty", ("ingest", "difficulty")),
    ("standardize", ("standardize",)),
    ("pretrain (cache + 5 frameworks)", ("pretrain",)),
    ("finetune (cache, 5 inits, eval)", ("finetune_cache", "finetune@", "finetune_eval")),
    ("finetune_controls", ("finetune_controls",)),
    ("pseudolabel", ("pseudolabel",)),
    ("classify3d", ("classify3d",)),
    ("xai", ("xai",)),
    ("report + register", ("report", "register")),
)


def first_lines(log: str, day: dt.date) -> dict[str, float]:
    """Epoch seconds of each stage's first timestamped line, in the order they ran."""
    first: dict[str, float] = {}
    stage = None
    for line in log.splitlines():
        if m := re.match(r"Running stage '([^']+)'", line):
            stage = m.group(1)
        elif (t := re.match(r"^(\d\d):(\d\d):(\d\d)\.\d+ \|", line)) and stage not in first:
            if stage is not None:
                h, mi, s = (int(v) for v in t.groups())
                when = dt.datetime(day.year, day.month, day.day, h, mi, s, tzinfo=dt.UTC)
                first[stage] = when.timestamp()
    return first


def group_of(stage: str) -> str:
    """The RESULTS.md group of a DVC stage (``pretrain@dino`` -> pretrain ...)."""
    for name, prefixes in GROUPS:
        if stage.startswith(prefixes):
            return name
    return stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("start", type=int, help="epoch seconds when make study started")
    ap.add_argument("end", type=int, help="epoch seconds when it ended")
    args = ap.parse_args()
    day = dt.datetime.fromtimestamp(args.start, dt.UTC).date()
    first = first_lines(open(args.log).read(), day)
    names = list(first)
    bounds = [first[n] for n in names] + [args.end]
    totals = {"install + Prefect start": bounds[0] - args.start if names else 0.0}
    for i, n in enumerate(names):
        g = group_of(n)
        totals[g] = totals.get(g, 0.0) + bounds[i + 1] - bounds[i]
    print("| stage | wall |\n|---|---|")
    for g, sec in totals.items():
        print(f"| {g} | {int(sec) // 60}:{int(sec) % 60:02d} |")
    total = args.end - args.start
    print(f"| **total** | **{total // 60}:{total % 60:02d}** |")


if __name__ == "__main__":
    main()
