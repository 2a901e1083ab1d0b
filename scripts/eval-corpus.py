#!/usr/bin/env python3
"""Build the detection evaluation corpus and score a configuration on it.

The corpus is built from public series fetched with the ordinary package
clients (nothing is vendored in this repository), so it builds on a fresh
machine that reaches only package registries:

- vega-datasets (npm, `npm pack`): `flights-3m.parquet`, 3 million US domestic
  flights of January to June 2001 (Bureau of Transportation Statistics, US
  government work), aggregated per origin airport and hour into departures
  (traffic, request counts) and mean departure delay (latency); `github.csv`,
  hourly commit counts.
- river (PyPI, `pip download`): `water-flow.csv`, an hourly water-flow sensor;
  and the Turing change-point series river ships (van den Burg and Williams,
  "An Evaluation of Change Point Detection Algorithms", 2020) with their
  human annotations: room occupancy sensors, a run log, Bitcoin, Brent crude,
  Apple and airline passengers.

Two kinds of labelled series:

- *injected*: the traffic, latency and sensor series above, each with three
  anomalies injected at seeded random places in the last 70% of the series,
  the kinds taken in turn: spike, dip, level shift, trend change, variance
  change, seasonality break, stuck values and a gap (rows missing). Sizes are
  in units of the series' own noise (the robust spread of its differences).
  Each is labelled with a window from 2 observations before its start to 20
  after its end.
- *annotated*: the Turing series, labelled where more than half of their human
  annotators marked a change (within 5 rows of each other), with a window from 5 observations before to 20
  after.

Every series is restamped onto one 3-minute cadence starting 2025-01-01 (the
shipped ingest schedule, one observation per tick): detectors see values in
order, not their clock, and one cadence makes the shipped train, score and
alert schedules mean the same thing on every series. The series are dealt
alternately into two halves, `tune` (to choose settings on) and `check` (to
confirm them on), each a batch of its own.

Usage:
  eval-corpus.py build OUT        fetch the sources (cached in
                                  ~/.cache/sandstack/corpus) and write OUT/{tune,check}/
                                  {history.csv,labels.csv,kinds.csv}, OUT/manifest.csv
  eval-corpus.py run OUT [ARGS]   make OUT/metrics (this repository's metrics/defaults and
                                  the two batches), import both halves into OUT/corpus.duckdb
                                  and backtest each against its labels, then say which
                                  kinds of anomaly were found (unless sweeping); ARGS go
                                  to `sandstack backtest` (--set, --sweep, --json, ...)

`run` uses $SANDSTACK (default: sandstack on PATH). Needs Python 3.11.4 or later with
`venv` (Debian: python3-venv), pip and npm. Overlapping annotated windows of one series
are one window to the backtest (79 in all), and one each in the by-kind counts (84).
"""
import ast
import csv
import datetime
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import zipfile

RIVER = "river==0.26.1"
VEGA = "vega-datasets@3.2.1"
DUCKDB = "duckdb==1.1.3"
START = datetime.datetime(2025, 1, 1)
STEP = datetime.timedelta(minutes=3)
KINDS = ["spike", "dip", "level_shift", "trend_change", "variance_change", "seasonality_break", "stuck", "gap"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_dir():
    d = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sandstack", "corpus")
    os.makedirs(d, exist_ok=True)
    return d


def run(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, **kw)


def fetch_river(cache):
    d = os.path.join(cache, RIVER.replace("==", "-"))
    if not (os.path.isdir(d) and any(f.endswith(".whl") for f in os.listdir(d))):
        # Only the data files inside are read: the one CPython 3.11 Linux
        # wheel, whatever Python runs this script.
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
             "--platform", "manylinux_2_28_x86_64", "--dest", d, RIVER])
    wheel = next(os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".whl"))
    return zipfile.ZipFile(wheel)


def fetch_vega(cache):
    d = os.path.join(cache, VEGA.replace("@", "-"))
    os.makedirs(d, exist_ok=True)
    if not any(f.endswith(".tgz") for f in os.listdir(d)):
        run(["npm", "pack", "--silent", "--pack-destination", d, VEGA], stdout=subprocess.DEVNULL)
    tgz = next(os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".tgz"))
    out = os.path.join(d, "package")
    if not os.path.isdir(out):
        with tarfile.open(tgz) as t:
            t.extractall(d, members=[m for m in t.getmembers() if m.name.startswith("package/data/")], filter="data")
    return os.path.join(out, "data")


def duckdb_python(cache):
    """A Python with duckdb, to read the flights Parquet file (the standard library has no reader)."""
    venv = os.path.join(cache, "venv-" + DUCKDB.replace("==", "-"))
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        run([sys.executable, "-m", "venv", venv])
    if subprocess.run([py, "-c", "import duckdb"], capture_output=True).returncode != 0:
        run([py, "-m", "pip", "install", "-q", DUCKDB])
    return py


FLIGHTS_SQL = """
import duckdb, json, sys
con = duckdb.connect()
top = [r[0] for r in con.sql("select origin from read_parquet(?) group by 1 order by count(*) desc limit 8",
                             params=[sys.argv[1]]).fetchall()]
hours = con.sql("select range as h from range(timestamp '2001-01-08', timestamp '2001-05-08', interval 1 hour)")
out = {}
for ap in top:
    rows = con.sql('''
        with f as (select date_trunc('hour', date) h, count(*) n, avg(delay) d
                   from read_parquet($p) where origin = $ap group by 1)
        select hours.h, coalesce(f.n, 0), f.d from hours left join f on f.h = hours.h order by 1
    ''', params={"p": sys.argv[1], "ap": ap}).fetchall()
    out[ap] = {"departures": [r[1] for r in rows], "delay": [r[2] for r in rows]}
json.dump(out, sys.stdout)
"""


def flights(cache, data):
    py = duckdb_python(cache)
    got = subprocess.run([py, "-c", FLIGHTS_SQL, os.path.join(data, "flights-3m.parquet")],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(got)


def river_csv(zf, name):
    with zf.open(name) as f:
        return list(csv.DictReader(line.decode() for line in f))


def annotations(zf, module):
    """The annotators' change points (row indices) as river's dataset class holds them."""
    src = zf.read(f"river/drift/datasets/{module}.py").decode()
    start = src.index("annotations=") + len("annotations=")
    depth, end = 0, start
    for end, ch in enumerate(src[start:], start):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            break
    by_annotator = ast.literal_eval(src[start:end + 1])
    # Annotators mark the same change a few rows apart: a change counts where more than half of
    # them marked a row within 5 of it; nearby such rows are one change (their median).
    marks = [sorted(set(p)) for p in by_annotator.values()]
    agreed = sorted(p for ps in marks for p in ps
                    if sum(any(abs(p - q) <= 5 for q in qs) for qs in marks) > len(marks) / 2)
    changes, group = [], []
    for p in agreed:
        if group and p - group[-1] > 5:
            changes.append(statistics.median_low(group))
            group = []
        group.append(p)
    if group:
        changes.append(statistics.median_low(group))
    return changes


def noise(values):
    diffs = [b - a for a, b in zip(values, values[1:])]
    med = statistics.median(diffs)
    mad = statistics.median(abs(d - med) for d in diffs)
    return max(1.4826 * mad / math.sqrt(2), 1e-9)


def inject(values, kinds, rng, period):
    """Three anomalies of the given kinds in the last 70% of `values`; returns (values, windows as index spans)."""
    n, s = len(values), noise(values)
    v = list(values)
    lo = int(n * 0.3)
    slots = sorted(rng.sample(range(3), 3))
    span = (n - lo) // 3
    keep = [True] * n
    windows = []
    nonneg = min(values) >= 0
    for slot, kind in zip(slots, kinds):
        at = lo + slot * span + rng.randrange(10, max(11, span - 150))
        size = rng.uniform(6, 10) * s
        end = at
        if kind == "spike":
            v[at] += size
        elif kind == "dip":
            v[at] = max(0.0, v[at] - size) if nonneg else v[at] - size
        elif kind == "level_shift":
            sign = rng.choice([-1, 1])
            for i in range(at, min(n, at + 120)):
                v[i] += sign * size * 0.6
        elif kind == "trend_change":
            for i in range(at, min(n, at + 120)):
                v[i] += (i - at) * size / 60
        elif kind == "variance_change":
            for i in range(at, min(n, at + 60)):
                v[i] += rng.gauss(0, 3 * s)
        elif kind == "seasonality_break":
            for i in range(at, min(n, at + 2 * period)):
                v[i] = values[min(n - 1, i + period // 2)]
            end = at + 2 * period - 1
        elif kind == "stuck":
            for i in range(at, min(n, at + 60)):
                v[i] = v[at]
            end = at + 59
        elif kind == "gap":
            for i in range(at, min(n, at + 40)):
                keep[i] = False
            at = end = min(n - 1, at + 40)
        if nonneg:
            v = [max(0.0, x) for x in v]
        windows.append((kind, at - 2, min(n - 1, end + 20)))
    return v, keep, windows


def build(out):
    cache = cache_dir()
    rng = random.Random(2025)
    series = []  # (name, source, values, keep, windows)

    data = fetch_vega(cache)
    zf = fetch_river(cache)

    injected = []
    for rank, (ap, m) in enumerate(flights(cache, data).items()):
        injected.append((f"departures_{ap.lower()}", "vega-datasets flights-3m (BTS 2001), hourly departures",
                         m["departures"], 24))
        if rank < 4:  # the four busiest: quieter airports' hourly mean delay is mostly noise
            delay = [d if d is not None else 0.0 for d in m["delay"]]
            injected.append((f"delay_{ap.lower()}", "vega-datasets flights-3m (BTS 2001), hourly mean delay", delay, 24))
    with open(os.path.join(data, "github.csv")) as f:
        injected.append(("github_commits", "vega-datasets github.csv, hourly commits",
                         [float(r["count"]) for r in csv.DictReader(f)], 24))
    injected.append(("water_flow", "river water-flow.csv, hourly sensor",
                     [float(r["Water flow [l/s]"]) for r in river_csv(zf, "river/datasets/water-flow.csv")], 24))

    k = 0
    for name, source, values, period in injected:
        kinds = [KINDS[(k + j) % len(KINDS)] for j in range(3)]
        k += 3
        v, keep, windows = inject([float(x) for x in values], kinds, rng, period)
        series.append((name, source, v, keep, windows))

    annotated = [
        ("occupancy", ["V1", "V2", "V3", "V4"]),
        ("run_log", ["Pace", "Distance"]),
        ("bitcoin", ["price"]),
        ("brent_crude_oil", ["DPB"]),
        ("apple", ["Close", "Volume"]),
        ("airline_passengers", ["Total Passengers"]),
    ]
    for module, columns in annotated:
        rows = river_csv(zf, f"river/drift/datasets/{module}.csv")
        points = annotations(zf, module)
        for col in columns:
            values = [float(r[col]) for r in rows]
            name = f"{module}_{col.lower().replace(' ', '_')}"
            windows = [("annotated", max(0, p - 5), min(len(values) - 1, p + 20)) for p in points if 0 < p < len(values)]
            series.append((name, f"river {module} (Turing change-point dataset), annotated", values, [True] * len(values), windows))

    manifest = []
    halves = {"tune": ([], [], []), "check": ([], [], [])}
    for i, (name, source, values, keep, windows) in enumerate(series):
        half = "tune" if i % 2 == 0 else "check"
        rows, labels, kinds = halves[half]
        ts = lambda j: (START + j * STEP).isoformat(sep=" ")
        rows.extend((ts(j), name, round(x, 4)) for j, x in enumerate(values) if keep[j])
        labels.extend((name, ts(a), ts(b)) for _, a, b in windows)
        kinds.extend((name, ts(a), ts(b), kind) for kind, a, b in windows)
        manifest.append((name, half, source, sum(keep), len(windows), " ".join(w[0] for w in windows)))

    for half, (rows, labels, kinds) in halves.items():
        d = os.path.join(out, half)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "history.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["metric_timestamp", "metric_name", "metric_value"])
            w.writerows(rows)
        with open(os.path.join(d, "labels.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["metric_name", "start", "end"])
            w.writerows(labels)
        with open(os.path.join(d, "kinds.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["metric_name", "start", "end", "kind"])
            w.writerows(kinds)
    with open(os.path.join(out, "manifest.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric_name", "half", "source", "observations", "windows", "kinds"])
        w.writerows(manifest)
    kinds = {}
    for m in manifest:
        for kind in m[5].split():
            kinds[kind] = kinds.get(kind, 0) + 1
    print(f"wrote {len(series)} series ({sum(m[3] for m in manifest)} observations, "
          f"{sum(m[4] for m in manifest)} labelled windows) to {out}: "
          + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))


def evaluate(out, args):
    exe = os.environ.get("SANDSTACK", "sandstack")
    metrics = os.path.join(out, "metrics")
    shutil.rmtree(metrics, ignore_errors=True)
    shutil.copytree(os.path.join(REPO, "metrics", "defaults"), os.path.join(metrics, "defaults"))
    # A fresh database each run: imports take a second, and a stale or half-imported one
    # would be backtested silently.
    db = os.path.join(out, "corpus.duckdb")
    for stale in (db, db + ".wal"):
        if os.path.exists(stale):
            os.remove(stale)
    for half in ("tune", "check"):
        os.makedirs(os.path.join(metrics, half))
        with open(os.path.join(metrics, half, f"{half}.yaml"), "w") as f:
            f.write(f"metric_batch: corpus_{half}\ndisable_ingest: true\n")
    flag = lambda name: next((a.split("=", 1)[1] if "=" in a else args[i + 1]
                              for i, a in enumerate(args)
                              if (a == name and i + 1 < len(args)) or a.startswith(name + "=")), None)
    sweeping = flag("--sweep") is not None
    detections = flag("--detections") or "all"
    said = sys.stderr if "--json" in args else sys.stdout
    for half in ("tune", "check"):
        common = ["--metrics", metrics, "--db", db]
        run([exe, "import", f"corpus_{half}", os.path.join(out, half, "history.csv")] + common,
            stdout=subprocess.DEVNULL)
        print(f"== {half}", file=said, flush=True)
        report = flag("--out") or os.path.join(out, half, "report")
        extra = [] if sweeping or flag("--out") else ["--out", report]
        run([exe, "backtest", f"corpus_{half}", "--labels", os.path.join(out, half, "labels.csv")]
            + common + extra + args)
        if not sweeping:
            recall_by_kind(os.path.join(out, half, "kinds.csv"), os.path.join(report, "points.csv"),
                           detections, said)


def recall_by_kind(kinds_csv, points_csv, detections, said):
    """Windows with a detection in them (what --detections counts), per kind of anomaly."""
    columns = {"all": ("alert", "change"), "alerts": ("alert",), "changes": ("change",)}[detections]
    detected = {}
    with open(points_csv) as f:
        for r in csv.DictReader(f):
            if any(r[c] == "1" for c in columns):
                detected.setdefault(r["metric_name"], []).append(r["metric_timestamp"])
    found, total = {}, {}
    with open(kinds_csv) as f:
        for r in csv.DictReader(f):
            hit = any(r["start"] <= t <= r["end"] for t in detected.get(r["metric_name"], []))
            total[r["kind"]] = total.get(r["kind"], 0) + 1
            found[r["kind"]] = found.get(r["kind"], 0) + hit
    print(f"windows found ({detections}), by kind: "
          + ", ".join(f"{k} {found[k]}/{total[k]}" for k in sorted(total)), file=said)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("build", "run"):
        sys.exit(__doc__)
    if sys.argv[1] == "build":
        build(sys.argv[2])
    else:
        evaluate(sys.argv[2], sys.argv[3:])


if __name__ == "__main__":
    main()
