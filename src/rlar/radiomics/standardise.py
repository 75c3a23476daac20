"""Per-feature z-scoring of radiomics targets, fitted on the training fold only.

The 13 features live on very different scales (fractions, ratios, GLCM contrast in squared grey levels), so the
regression loss on ``h_tirads`` would otherwise be dominated by the largest. Fitting on training images only keeps
validation statistics out of the targets (no leakage).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


class Standardiser:
    """``(x - mean) / max(std, std_floor)`` per column.

    ``std_floor`` keeps a feature that is constant on the training fold (e.g. ``cystic_fraction`` = 0 on a fold
    without cystic nodules) from dividing by zero: it is then only centred.
    """

    def __init__(self, std_floor: float = 1e-6) -> None:
        if not std_floor > 0:
            raise ValueError(f"std_floor must be > 0, got {std_floor}")
        self.std_floor = float(std_floor)
        self.columns: list[str] | None = None
        self.mean: list[float] | None = None
        self.std: list[float] | None = None

    @property
    def fitted(self) -> bool:
        return self.columns is not None

    def fit(self, frame: pd.DataFrame) -> Standardiser:
        """Learn mean and (population) std of each column of ``frame`` (the training fold's targets)."""
        if len(frame) == 0:
            raise ValueError("cannot fit a Standardiser on an empty frame")
        values = frame.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(values)):
            bad = [c for c, ok in zip(frame.columns, np.isfinite(values).all(axis=0), strict=True) if not ok]
            raise ValueError(f"cannot fit on non-finite values in column(s) {bad}")
        self.columns = [str(c) for c in frame.columns]
        self.mean = [float(v) for v in values.mean(axis=0)]
        self.std = [float(max(v, self.std_floor)) for v in values.std(axis=0)]
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Standardised copy of ``frame`` (same index and columns; columns must match the fitted ones)."""
        mean, std = self._stats(frame)
        return pd.DataFrame((frame.to_numpy(dtype=np.float64) - mean) / std, index=frame.index, columns=frame.columns)

    def inverse_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Back to feature units (e.g. to read a predicted ``h_tirads`` as radiomics values)."""
        mean, std = self._stats(frame)
        return pd.DataFrame(frame.to_numpy(dtype=np.float64) * std + mean, index=frame.index, columns=frame.columns)

    def fit_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.fit(frame).transform(frame)

    def state_dict(self) -> dict[str, Any]:
        """Plain Python lists/floats only, so it can be stored in a ``weights_only=True`` torch checkpoint."""
        if not self.fitted:
            raise ValueError("Standardiser is not fitted: call fit() first")
        return {
            "columns": list(self.columns),  # type: ignore[arg-type]
            "mean": list(self.mean),  # type: ignore[arg-type]
            "std": list(self.std),  # type: ignore[arg-type]
            "std_floor": self.std_floor,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Standardiser:
        missing = {"columns", "mean", "std", "std_floor"} - set(state)
        if missing:
            raise ValueError(f"Standardiser state is missing key(s) {sorted(missing)}")
        n = len(state["columns"])
        for key in ("mean", "std"):
            if len(state[key]) != n:
                raise ValueError(f"Standardiser state '{key}' has {len(state[key])} values for {n} columns")
        if any(not s > 0 for s in state["std"]):
            raise ValueError("Standardiser state 'std' must be > 0 everywhere")
        out = cls(std_floor=float(state["std_floor"]))
        out.columns = [str(c) for c in state["columns"]]
        out.mean = [float(v) for v in state["mean"]]
        out.std = [float(v) for v in state["std"]]
        return out

    def _stats(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if not self.fitted:
            raise ValueError("Standardiser is not fitted: call fit() first")
        if [str(c) for c in frame.columns] != self.columns:
            raise ValueError(f"columns {list(frame.columns)} differ from the fitted columns {self.columns}")
        return np.asarray(self.mean), np.asarray(self.std)

