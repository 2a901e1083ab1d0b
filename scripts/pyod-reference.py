#!/usr/bin/env python3
"""Reference scores from PyOD itself for the detectors sandstack implements
natively (src/models/): ECOD, COPOD, HBOS, LOF, MAD, KNN, PCA, IForest and
OCSVM,
with PyOD's defaults, on one fixed data set. Writes
tests/fixtures/pyod_reference.json, which the test
`models::reference_tests` compares sandstack's scores with (rank
correlation; same top rows).

Run it again (and commit the fixture) when a model changes on purpose:

    python3 -m venv /tmp/pyod && /tmp/pyod/bin/pip install pyod
    /tmp/pyod/bin/python scripts/pyod-reference.py

Each test row is scored alone (a one-row decision_function call), as
sandstack scores rows as they arrive; for ECOD and COPOD this matters, since
PyOD ranks the rows being scored among the training rows.
"""
import json
import os

import numpy as np
import pyod
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.hbos import HBOS
from pyod.models.iforest import IForest
from pyod.models.knn import KNN
from pyod.models.lof import LOF
from pyod.models.mad import MAD
from pyod.models.ocsvm import OCSVM
from pyod.models.pca import PCA


def series(rng, n):
    """A daily-seasonal metric with noise, a trend and a few breaks."""
    t = np.arange(n)
    x = 10 + 2 * np.sin(2 * np.pi * t / 24) + 0.01 * t + rng.normal(0, 0.3, n)
    return x


def rows(x, lags=3):
    """sandstack's feature rows: the value and its previous `lags` values."""
    return np.array([x[i - lags:i + 1][::-1] for i in range(lags, len(x))])


def main():
    rng = np.random.default_rng(20261206)
    x = series(rng, 460)
    # Test rows: normal ones, then spikes, dips, a level shift and a stuck value.
    test_x = x[300:].copy()
    test_x[20] += 6
    test_x[45] -= 5
    test_x[70:80] += 3
    test_x[110:125] = test_x[110]
    train = rows(x[:304])
    test = rows(np.concatenate([x[300 - 3:300], test_x]))
    univariate_train, univariate_test = train[:, :1], test[:, :1]
    detectors = {
        "ECOD": (ECOD(), False),
        "COPOD": (COPOD(), False),
        "HBOS": (HBOS(), False),
        "LOF": (LOF(), False),
        "MAD": (MAD(), True),
        "KNN": (KNN(), False),
        "PCA": (PCA(), False),
        "IForest": (IForest(random_state=0), False),
        "OCSVM": (OCSVM(), False),
    }
    out = {
        "pyod_version": pyod.__version__,
        "train": train.tolist(),
        "test": test.tolist(),
        "models": {},
    }
    for name, (model, one_feature) in detectors.items():
        tr, te = (univariate_train, univariate_test) if one_feature else (train, test)
        model.fit(tr)
        scores = [float(model.decision_function(row[None, :])[0]) for row in te]
        out["models"][name] = {
            "one_feature": one_feature,
            "training_scores": [float(s) for s in model.decision_scores_],
            "scores": scores,
        }
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "pyod_reference.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(path)} (PyOD {pyod.__version__}, {len(train)} training rows, {len(test)} test rows)")


if __name__ == "__main__":
    main()
