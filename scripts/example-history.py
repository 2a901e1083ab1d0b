#!/usr/bin/env python3
"""Write an example history and its labels for README.md's "Tuning detection".

Two metrics every 5 minutes for 7 days (a daily cycle and noise), with
anomalies injected at known times: a spike, a dip, a level shift and a
stretch of stuck values. Deterministic (seeded), standard library only.

Usage: example-history.py OUT_DIR   (writes OUT_DIR/history.csv and OUT_DIR/labels.csv)
"""
import datetime
import math
import os
import random
import sys

STEP = datetime.timedelta(minutes=5)
START = datetime.datetime(2024, 3, 4)
POINTS = 7 * 288


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = random.Random(7)
    rows, labels = [], []

    def label(metric, i, width):
        start, end = START + (i - width // 2) * STEP, START + (i + width // 2) * STEP
        labels.append((metric, start.isoformat(sep=" "), end.isoformat(sep=" ")))

    for metric, base, amp, sd in [("cpu_percent", 40.0, 15.0, 2.0), ("latency_ms", 120.0, 30.0, 6.0)]:
        events = {
            "cpu_percent": {700: ("spike", 45.0), 1300: ("dip", -30.0), 1700: ("shift", 20.0)},
            "latency_ms": {500: ("spike", 150.0), 1100: ("stuck", 0.0), 1800: ("dip", -70.0)},
        }[metric]
        shift = 0.0
        for i in range(POINTS):
            t = START + i * STEP
            v = base + shift + amp * math.sin(2 * math.pi * i / 288) + rng.gauss(0, sd)
            kind = events.get(i, (None, 0.0))
            if kind[0] in ("spike", "dip"):
                v += kind[1]
                label(metric, i, 12)
            elif kind[0] == "shift":
                shift = kind[1]
                v += shift
                label(metric, i, 24)
            elif kind[0] == "stuck":
                label(metric, i + 18, 48)
            if 1100 <= i < 1136 and metric == "latency_ms":
                v = rows[-1][2] if i > 1100 else v
            rows.append((t.isoformat(sep=" "), metric, round(v, 3)))
    with open(os.path.join(out, "history.csv"), "w") as f:
        f.write("metric_timestamp,metric_name,metric_value\n")
        f.writelines(f"{t},{m},{v}\n" for t, m, v in rows)
    with open(os.path.join(out, "labels.csv"), "w") as f:
        f.write("metric_name,start,end\n")
        f.writelines(f"{m},{s},{e}\n" for m, s, e in labels)
    print(f"wrote {len(rows)} observations and {len(labels)} labelled windows to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
