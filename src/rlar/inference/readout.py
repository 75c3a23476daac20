"""A trained model's h_tirads read-out: what its 13 guided dimensions say, in radiomics feature units.

Each checkpoint predicts ``h_tirads`` on the images of its own held-out fold, prepared exactly as in training, and
the prediction is de-standardised with the checkpoint's standardiser, so it can be scored against the readers'
ACR descriptors with :func:`rlar.radiomics.alignment.alignment_table` like the true-mask features
(``benchmarks/descriptor_alignment.py``; docs/radiomics.md "h_tirads read-out of a trained model").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rlar.data.dataset import ThyroidDataset, collate
from rlar.data.sources import open_source
from rlar.data.sources.base import Source
from rlar.data.splits import load_splits
from rlar.errors import DataError
from rlar.inference.loading import load_trained_model
from rlar.models.predict import predict_batch
from rlar.radiomics.spec import FEATURE_NAMES
from rlar.radiomics.standardise import Standardiser
from rlar.runs import SPLITS_FILE, chosen_checkpoint, find_runs, run_dir_of


@dataclass
class Readout:
    """A trained model's h_tirads read-out on the held-out test images of its run(s), in feature units.

    ``features``: index image_id, the 13 feature columns (de-standardised with each checkpoint's standardiser; an
    image held out by several runs, e.g. seeds of a grid arm, gets the mean of their read-outs);
    ``descriptors`` / ``patients``: image_id -> canonical descriptors / patient id of those images;
    ``runs``: the checkpoint files used, ``skipped``: images of the test folds that could not be predicted,
    ``source``: the runs' data source as opened for the read-out (to compute the true-mask features of the same
    images).
    """

    features: pd.DataFrame
    descriptors: dict[str, dict[str, str | None]]
    patients: dict[str, str]
    runs: list[str]
    skipped: list[str]
    source: Source


def readout_features(
    runs: Sequence[str | Path],
    root: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    subset: str = "test",
) -> Readout:
    """Predict ``h_tirads`` of each run's checkpoint on its own held-out ``subset`` images and de-standardise it.

    Each element of ``runs`` is anything :func:`rlar.runs.find_runs` accepts (a run folder, ``rlar train --fold
    all``'s folder, a grid arm or seed folder). The images are prepared exactly as in training (the run's own
    source, options and stored preprocessing, through :class:`rlar.data.dataset.ThyroidDataset`, as ``rlar
    evaluate`` does for a run's test images), with the run's prediction section's flip TTA; ``root`` replaces
    the run's data root (the same database at another path). The checkpoint's fold and the run's
    ``splits.json`` name the images.

    Raises:
        DataError: no run under a path, a checkpoint without a radiomics standardiser (a model trained without
            guidance has no read-out), or a missing split file.
    """
    files: list[Path] = []
    for path in runs:
        found = find_runs(path)
        if not found:
            raise DataError(path, "no run with a checkpoint here (a run folder, fold_* folder or grid arm)")
        files.extend(chosen_checkpoint(r.path) for r in found)

    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    descriptors: dict[str, dict[str, str | None]] = {}
    patients: dict[str, str] = {}
    skipped: list[str] = []
    source: Source | None = None
    for file in files:
        trained = load_trained_model(file, device=device)
        state = trained.checkpoint.get("standardiser")
        if not state:
            raise DataError(file, "checkpoint has no radiomics standardiser: the model was trained without "
                                  "guidance, so h_tirads has no feature units to read out")
        standardiser = Standardiser.from_state_dict(state)
        cfg = trained.config
        run_dir = run_dir_of(trained.path)
        split_file = run_dir / SPLITS_FILE
        if not split_file.is_file():  # a grid keeps one splits.json at its root
            candidates = [p / SPLITS_FILE for p in run_dir.parents if (p / SPLITS_FILE).is_file()]
            if not candidates:
                raise DataError(split_file, "split file not found beside the run or in a folder above it")
            split_file = candidates[0]
        folds = load_splits(split_file)
        fold = trained.checkpoint.get("fold")
        fold = cfg.data.fold if fold is None else fold
        if fold is None or not 0 <= int(fold) < len(folds):
            raise DataError(file, f"checkpoint's fold {fold} is not one of the {len(folds)} folds of {split_file}: "
                                  "cannot tell which images it never saw")
        ids = list(folds[int(fold)][subset])
        source = open_source(cfg.data.source, root if root is not None else cfg.data.root, **dict(cfg.data.options))
        dataset = ThyroidDataset(source, ids, image_size=trained.prep.image_size)
        skipped.extend(f"{s.item}: {s.reason}" for s in getattr(dataset, "skipped", []))
        info_of = {info.image_id: info for info in source.infos}
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
        with torch.inference_mode():
            for batch in loader:
                prediction = predict_batch(trained.model, batch["image"].to(device), tta=cfg.prediction.tta)
                if prediction.h_tirads is None:
                    raise DataError(file, "the network has no h_tirads output")
                h = pd.DataFrame(prediction.h_tirads.float().cpu().numpy().astype(np.float64),
                                 columns=list(FEATURE_NAMES))
                values = standardiser.inverse_transform(h).to_numpy()
                for image_id, row in zip(batch["image_id"], values, strict=True):
                    sums[image_id] = sums.get(image_id, 0.0) + row
                    counts[image_id] = counts.get(image_id, 0) + 1
                    descriptors[image_id] = dict(info_of[image_id].descriptors)
                    patients[image_id] = info_of[image_id].patient_id
    frame = pd.DataFrame.from_dict({k: sums[k] / counts[k] for k in sums}, orient="index",
                                   columns=list(FEATURE_NAMES))
    frame.index.name = "image_id"
    assert source is not None  # files is not empty
    return Readout(frame, descriptors, patients, [str(f) for f in files], skipped, source)
