"""optim.cpu_amp: bf16 autocast on a CPU with native bf16, float32 with a warning elsewhere, off by default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlar import environment
from rlar.training import trainer as trainer_module
from rlar.training.config import load_config
from rlar.training.run import run_training


def _autocast_during_steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, torch.dtype]]:
    seen: list[tuple[bool, torch.dtype]] = []
    original = trainer_module.Trainer._strategy_step

    def spy(self: trainer_module.Trainer, batch: dict) -> object:
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return original(self, batch)

    monkeypatch.setattr(trainer_module.Trainer, "_strategy_step", spy)
    return seen


@pytest.mark.parametrize("native", [True, False])
def test_cpu_amp_autocasts_only_where_bf16_is_native(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                                     monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(environment, "cpu_has_native_bf16", lambda: native)
    seen = _autocast_during_steps(monkeypatch)
    cfg = load_config(None, [*tiny_overrides, "optim.epochs=1", "optim.cpu_amp=true", "training.device=cpu"])
    if native:
        run_training(cfg, tmp_path / "run", progress=False)
    else:
        with pytest.warns(UserWarning, match="no native bf16"):
            run_training(cfg, tmp_path / "run", progress=False)
    assert seen, "no training step ran"
    assert all(enabled == native for enabled, _ in seen)
    if native:
        assert all(dtype == torch.bfloat16 for _, dtype in seen)


def test_cpu_training_is_float32_by_default(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "cpu_has_native_bf16", lambda: True)
    seen = _autocast_during_steps(monkeypatch)
    run_training(load_config(None, [*tiny_overrides, "optim.epochs=1", "training.device=cpu"]), tmp_path / "run",
                 progress=False)
    assert seen and not any(enabled for enabled, _ in seen)
