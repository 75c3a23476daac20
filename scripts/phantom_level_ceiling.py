"""How much of the phantom's true ACR level the 13 radiomics features carry: a ceiling for the demo's classifier.

The phantom draws each nodule's ACR descriptors, renders them, and its true level follows from the descriptors
(rlar.data.phantom.acr). This script extracts the 13 TI-RADS-aligned features (rlar.radiomics) from every image
with the true mask and with the mask of the reader who annotated it in the demo (``mask_from=random_reader``),
and scores two off-the-shelf classifiers on them by 5-fold cross-validated macro-F1 against the *true* levels.
It answers whether the level is learnable from what the guided embedding h_tirads is trained to carry, so that a
weak network classifier can be told apart from an impossible task.

    python scripts/phantom_level_ceiling.py                    # the demo's phantom: 200 cases, 96 px
    python scripts/phantom_level_ceiling.py --n-cases 400
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rlar.data.sources import open_source
from rlar.radiomics import extract_features


def feature_table(n_cases: int, size: int, mask_from: str) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 13), true levels (N,)) of the phantom's images, features from ``mask_from`` masks."""
    source = open_source("phantom", None, n_cases=n_cases, image_size=(size, size), mask_from=mask_from,
                         label_from="truth")
    rows, levels = [], []
    for index in range(len(source)):
        sample = source[index]
        rows.append(np.asarray(extract_features(sample.image, sample.mask), dtype=np.float64))
        levels.append(sample.info.tirads)
    return np.nan_to_num(np.stack(rows)), np.asarray(levels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cases", type=int, default=200, help="phantom cases (the demo's cpu size: 200)")
    parser.add_argument("--size", type=int, default=96, help="rendered image side in pixels (the demo's: 96)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cross-validation folds and the forest")
    args = parser.parse_args(argv)

    classifiers = {
        "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        "random forest (300 trees)": RandomForestClassifier(n_estimators=300, random_state=args.seed),
    }
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=args.seed)
    print(f"phantom: {args.n_cases} cases at {args.size} px; 5-fold cross-validated macro-F1 against the true levels")
    for mask_from in ("truth", "random_reader"):
        start = time.perf_counter()
        features, levels = feature_table(args.n_cases, args.size, mask_from)
        names, counts = np.unique(levels, return_counts=True)
        print(f"\nfeatures from the {mask_from.replace('_', ' ')} masks ({time.perf_counter() - start:.0f} s); "
              f"levels: {', '.join(f'{n} {c}' for n, c in zip(names, counts))}")
        for name, classifier in classifiers.items():
            predicted = cross_val_predict(classifier, features, levels, cv=folds)
            print(f"  {name:<28} macro-F1 {f1_score(levels, predicted, average='macro'):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
