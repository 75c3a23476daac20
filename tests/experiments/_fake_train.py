"""A stand-in for rlar.training.run.run_training: writes a run folder's files (C6 layout) in milliseconds and records
how it was called, so skip / resume / shard / lock logic is tested without training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from rlar.data.splits import load_splits
from rlar.training.config import dump_config


def fake_train(cfg: Any, out_dir: str | Path, fold: int | None = None, resume: bool = False,
               progress: bool = True) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "calls.txt").open("a") as handle:
        handle.write("resume\n" if resume else "fresh\n")
    dump_config(cfg, out / "config.yaml")
    test = load_splits(cfg.data.split_file)[cfg.data.fold].get("test") or load_splits(cfg.data.split_file)[
        cfg.data.fold]["val"]
    pd.DataFrame({"image_id": test, "patient_id": [i.split("_")[0] for i in test], "has_mask": True,
                  "dice": 0.5, "iou": 0.33, "hd95_px": 3.0}).to_csv(out / "predictions_test.csv", index=False)
    metrics = {"test": {"dice": 0.5}, "val": {}, "run": {"method": cfg.method, "fold": cfg.data.fold,
                                                         "seed": cfg.training.seed}}
    (out / "metrics.json").write_text(json.dumps(metrics))
    return metrics
