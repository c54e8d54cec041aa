#!/usr/bin/env python3
"""Example labloop plugin: a lifetime model wrapping a scikit-learn regressor.

It trains at start-up on a CSV of labloop's early-cycle features of cells with known lives
(``labloop predict features --cells DIR --lives FILE --out train.csv`` writes one), predicts
log10 cycle life with a ridge regression on the standardised features, and reports σ from the
cross-validated residuals. A cell whose features lie outside the training cells' range is
flagged ``out_of_domain`` and its σ doubled for every training range it leaves by a whole
range: the model says when it extrapolates.

    python3 sklearn_life_model.py --train train.csv [--features log_var_dq,log_abs_min_dq]

(or ``SKLEARN_LIFE_TRAIN=train.csv``).

Needs scikit-learn and numpy.
"""

import argparse
import csv
import math
import os
import sys

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from labloop_plugin import Plugin, PluginError  # noqa: E402

DEFAULT_FEATURES = ["log_var_dq", "log_abs_min_dq", "log_abs_mean_dq", "log_abs_skew_dq"]


def load(path, wanted):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit("%s: no cells" % path)
    missing = [name for name in wanted if name not in rows[0]]
    if missing:
        sys.exit("%s: no column %s" % (path, ", ".join(missing)))
    x, y = [], []
    for row in rows:
        values = [row[name] for name in wanted]
        if "" in values:
            continue
        x.append([float(v) for v in values])
        y.append(math.log10(float(row["cycle_life"])))
    return np.array(x), np.array(y)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", default=os.environ.get("SKLEARN_LIFE_TRAIN"),
                        help="features CSV (default: $SKLEARN_LIFE_TRAIN)")
    parser.add_argument("--features", default=",".join(DEFAULT_FEATURES))
    args = parser.parse_args()
    if not args.train:
        sys.exit("no training cells: give --train FILE or set SKLEARN_LIFE_TRAIN "
                 "(`labloop predict features --cells DIR --lives FILE --out FILE` writes one)")
    names = [n for n in args.features.split(",") if n]
    x, y = load(args.train, names)
    regressor = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 25)))
    folds = min(5, len(y))
    residuals = y - cross_val_predict(regressor, x, y, cv=folds)
    sigma_log10 = float(np.sqrt(np.mean(residuals**2)))
    regressor.fit(x, y)
    low, high = x.min(axis=0), x.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    print("trained on %d cells, %d features; cross-validated sigma %.3f log10"
          % (len(y), len(names), sigma_log10), file=sys.stderr)

    plugin = Plugin("sklearn-life", version="1.0.0")

    @plugin.model("ridge-life", window=100,
                  description="Ridge regression of log10 life on labloop's early features")
    def predict(features, records, call):
        missing = [n for n in names if n not in features]
        if missing:
            raise PluginError("bad_request", "features missing: %s" % ", ".join(missing))
        cell = np.array([[float(features[n]) for n in names]])
        log_life = float(regressor.predict(cell)[0])
        outside = np.maximum(low - cell[0], cell[0] - high) / span
        sigma = sigma_log10
        result = {}
        far = [(n, o) for n, o in zip(names, outside) if o > 0]
        if far:
            worst = max(o for _, o in far)
            sigma *= 2.0 ** math.ceil(worst)
            result["out_of_domain"] = "; ".join(
                "%s %.2f ranges outside the training cells" % (n, o) for n, o in far)
        life = 10.0 ** log_life
        result.update({"cycle_life": life, "sigma": life * math.log(10) * sigma})
        return result

    plugin.run()


if __name__ == "__main__":
    main()
