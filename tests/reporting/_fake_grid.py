"""A small grid folder written by hand in the run-folder layout of docs/interfaces.md, so the report is tested without training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from rlar.data.labels import SCALE_LEVELS
from rlar.experiments.arms import Arm, TableSpec

LEVELS = SCALE_LEVELS["ddti"]
ARMS = ("vanilla_mtl", "guided_mtl", "rlar")
#: True mean Dice advantage of each arm over vanilla_mtl in the fake data.
DICE_SHIFT = {"vanilla_mtl": 0.0, "guided_mtl": 0.02, "rlar": 0.06}


def write_fake_grid(root: Path, n_patients: int = 60, n_folds: int = 3, seeds: tuple[int, ...] = (0,),
                    run_sd: float = 0.0, skill_sd: float = 0.0, same_seeds: bool = False) -> Path:
    """The grid folder; every run of an arm scores the same images, with its own image-level noise, plus (trainings
    that disagree) a Dice offset N(0, run_sd) and a classification skill offset N(0, skill_sd) per run;
    ``same_seeds``: every seed of an arm writes the predictions of its first seed (trainings that agree)."""
    rng = np.random.default_rng(0)
    run_rng = np.random.default_rng(1)
    patients = [f"p{i:03d}" for i in range(n_patients)]
    images = [(f"{p}_{k}", p) for i, p in enumerate(patients) for k in range(1 + i % 2)]
    fold_of = {p: i % n_folds for i, p in enumerate(patients)}
    labels = {img: int(rng.integers(len(LEVELS))) for img, _ in images}
    base_dice = {img: float(np.clip(rng.normal(0.7, 0.1), 0, 1)) for img, _ in images}
    splits = []
    for f in range(n_folds):
        test = sorted(i for i, p in images if fold_of[p] == f)
        rest = sorted(i for i, p in images if fold_of[p] != f)
        splits.append({"train": rest[: len(rest) * 4 // 5], "val": rest[len(rest) * 4 // 5:], "test": test})
    root.mkdir(parents=True, exist_ok=True)
    (root / "splits.json").write_text(json.dumps(splits))
    tables = [TableSpec("main", "All methods (fake)", ARMS, (("guided_mtl", "vanilla_mtl"), ("rlar", "vanilla_mtl"),
                                                            ("rlar", "guided_mtl")))]
    (root / "grid.json").write_text(json.dumps({"arms": [Arm(a, a).to_dict() for a in ARMS],
                                                "tables": [t.to_dict() for t in tables], "folds": list(range(n_folds)),
                                                "seeds": list(seeds), "n_folds": n_folds}))
    for arm in ARMS:
        skill = {"vanilla_mtl": 1.0, "guided_mtl": 1.5, "rlar": 2.0}[arm]
        first: dict[int, list[dict]] = {}
        for seed in seeds:
            for f in range(n_folds):
                run = root / arm / f"seed{seed}" / f"fold{f}"
                run.mkdir(parents=True)
                offset = float(run_rng.normal(0, run_sd)) if run_sd else 0.0
                run_skill = skill + (float(run_rng.normal(0, skill_sd)) if skill_sd else 0.0)
                rows = []
                for img, p in images:
                    if fold_of[p] != f:
                        continue
                    y = labels[img]
                    logits = rng.normal(0, 1, len(LEVELS))
                    logits[y] += run_skill
                    prob = np.exp(logits) / np.exp(logits).sum()
                    dice = float(np.clip(base_dice[img] + DICE_SHIFT[arm] + offset + rng.normal(0, 0.02), 0, 1))
                    row = {"image_id": img, "patient_id": p, "has_mask": True, "dice": dice, "iou": dice / (2 - dice),
                           "hd95_px": 10 * (1 - dice), "label": y, "label_name": LEVELS[y],
                           "pred": int(prob.argmax()), "pred_name": LEVELS[int(prob.argmax())]}
                    row.update({f"prob_{n}": float(v) for n, v in zip(LEVELS, prob)})
                    rows.append(row)
                if same_seeds:
                    rows = first.setdefault(f, rows)
                pd.DataFrame(rows).to_csv(run / "predictions_test.csv", index=False)
                (run / "metrics.json").write_text(json.dumps({"test": {}, "val": {}, "run": {"method": arm,
                                                                                             "fold": f}}))
                epochs = np.arange(1, 4)
                pd.DataFrame({"epoch": epochs, "total": 1.0 / epochs, "loss_seg": 0.5 / epochs,
                              "loss_cls": 0.4 / epochs, "cosine": -0.01 * epochs * skill,
                              "val_dice": 0.5 + 0.1 * epochs}).to_csv(run / "log.csv", index=False)
    return root
