"""Standardiser: train-fold statistics, std floor, and a state that survives a weights_only torch checkpoint."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from rlar.radiomics import FEATURE_NAMES, Standardiser


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    columns = list(FEATURE_NAMES)
    train = pd.DataFrame(rng.normal(3.0, 2.0, (20, 13)), columns=columns, index=[f"t{i}" for i in range(20)])
    train["cystic_fraction"] = 0.0  # constant on this fold
    val = pd.DataFrame(rng.normal(3.0, 2.0, (5, 13)), columns=list(FEATURE_NAMES), index=[f"v{i}" for i in range(5)])
    return train, val


def test_fit_on_train_transforms_to_zero_mean_unit_std(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, val = frames
    std = Standardiser().fit(train)
    out = std.transform(train)
    varying = [c for c in FEATURE_NAMES if c != "cystic_fraction"]
    np.testing.assert_allclose(out[varying].mean().to_numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(out[varying].std(ddof=0).to_numpy(), 1.0, rtol=1e-12)
    # the constant column is centred, divided by the floor, not by zero
    assert (out["cystic_fraction"] == 0.0).all() and std.std is not None and std.std[0] == 1e-6
    # validation uses the training statistics (no refit): its mean is not forced to zero
    val_out = std.transform(val)
    expected = (val["echo_ratio"] - train["echo_ratio"].mean()) / train["echo_ratio"].std(ddof=0)
    np.testing.assert_allclose(val_out["echo_ratio"].to_numpy(), expected.to_numpy(), rtol=1e-12)
    assert list(val_out.index) == list(val.index)
    np.testing.assert_allclose(std.inverse_transform(val_out).to_numpy(), val.to_numpy(), rtol=1e-12)


def test_state_dict_is_plain_and_loads_with_weights_only(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, val = frames
    std = Standardiser(std_floor=1e-3).fit(train)
    state = std.state_dict()
    assert all(type(v) is float for v in state["mean"] + state["std"]) and type(state["std_floor"]) is float
    buffer = io.BytesIO()
    torch.save({"standardiser": state}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["standardiser"]
    again = Standardiser.from_state_dict(loaded)
    pd.testing.assert_frame_equal(again.transform(val), std.transform(val))


def test_errors_name_the_problem(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, _ = frames
    with pytest.raises(ValueError, match="not fitted"):
        Standardiser().transform(train)
    with pytest.raises(ValueError, match="empty"):
        Standardiser().fit(train.iloc[:0])
    with pytest.raises(ValueError, match="differ from the fitted columns"):
        Standardiser().fit(train).transform(train[list(FEATURE_NAMES[:5])])
    bad = train.copy()
    bad.iloc[0, 3] = np.nan
    with pytest.raises(ValueError, match=FEATURE_NAMES[3]):
        Standardiser().fit(bad)
    state = Standardiser().fit(train).state_dict()
    state["std"] = state["std"][:3]
    with pytest.raises(ValueError, match="'std' has 3 values"):
        Standardiser.from_state_dict(state)
    with pytest.raises(ValueError, match="std_floor"):
        Standardiser(std_floor=0.0)
