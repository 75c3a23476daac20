"""rlar.environment, the ground floor of the run's environment: the one device list, device resolution, the one
write probe, CPU threads, the CPU bf16 check (issue 22)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import get_args

import pytest
import torch

from rlar import environment
from rlar.cli.main import build_parser
from rlar.data.files import probe_folder
from rlar.environment import (
    DEFAULT_DEVICE,
    DEVICES,
    INFERENCE_DEVICE,
    Device,
    check_writable,
    cpu_autocast_bf16,
    resolve_device,
    set_cpu_threads,
    why_not_writable,
)
from rlar.errors import ConfigError, DataError
from rlar.training.config import load_config

SOURCE = Path(__file__).resolve().parents[1] / "src" / "rlar"
#: The device names written out as a list, in any quoting and spacing.
_SPELLED_LIST = re.compile(r"""["']auto["'],\s*["']cpu["'],\s*["']cuda["'],\s*["']mps["']""")
#: Files that still spell the list, with what to do (another engineer's file at the time of issue 22). A fixed file
#: has to leave this table.
_STILL_SPELLED: dict[str, str] = {}  # a file that still spells the list, with its fix (none today)


def test_the_device_names_are_spelled_only_in_the_environment_module() -> None:
    spelled = {str(path.relative_to(SOURCE)) for path in SOURCE.rglob("*.py") if _SPELLED_LIST.search(path.read_text())}
    assert spelled - set(_STILL_SPELLED) == {"environment.py"}
    assert set(_STILL_SPELLED) <= spelled, "fixed: remove from _STILL_SPELLED"


def _device_option(command: str) -> argparse.Action:
    parser = build_parser(full=True)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action: argparse.Action = next(a for a in subparsers.choices[command]._actions if a.dest == "device")
    return action


def test_the_device_list_is_the_literal_type() -> None:
    assert DEVICES == get_args(Device) == ("auto", "cpu", "cuda", "mps")
    assert DEFAULT_DEVICE in DEVICES and INFERENCE_DEVICE in DEVICES


@pytest.mark.parametrize(("command", "default"), [("predict", INFERENCE_DEVICE), ("serve", INFERENCE_DEVICE),
                                                  ("evaluate", DEFAULT_DEVICE), ("experiment", None),
                                                  ("train", None)])
def test_every_device_option_offers_the_one_list(command: str, default: str | None) -> None:
    option = _device_option(command)
    assert tuple(option.choices or ()) == DEVICES
    assert option.default == default


def test_the_training_config_takes_exactly_the_device_list() -> None:
    assert load_config(None, []).training.device == DEFAULT_DEVICE
    for name in DEVICES:
        assert load_config(None, [f"training.device={name}"]).training.device == name
    with pytest.raises(ConfigError, match="training.device"):
        load_config(None, ["training.device=tpu"])


def test_resolve_device_auto_falls_back_to_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_resolve_device_refuses_a_missing_or_unknown_device_naming_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device") as missing:
        resolve_device("cuda", "--device")
    assert missing.value.key == "--device"
    with pytest.raises(ConfigError, match="unknown device 'tpu'; choose one of auto, cpu, cuda, mps") as unknown:
        resolve_device("tpu")
    assert unknown.value.key == "training.device"


def test_check_writable_creates_the_folder_and_leaves_no_probe(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "out"
    assert check_writable(folder) == folder
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_check_writable_names_the_folder_the_role_and_the_remedy(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    folder = tmp_path / "a_file" / "run"
    with pytest.raises(DataError) as refused:
        check_writable(folder, "the run folder", remedy="choose another --out")
    assert refused.value.item == str(folder)
    assert refused.value.reason.startswith("the run folder is not writable (")
    assert refused.value.reason.endswith("); choose another --out")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions that bind the user")
def test_a_read_only_folder_is_reported_in_the_systems_words(tmp_path: Path) -> None:
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert why_not_writable(folder) == "Permission denied"
        with pytest.raises(DataError, match="output folder is not writable \\(Permission denied\\)"):
            check_writable(folder)
    finally:
        folder.chmod(0o700)


def test_the_options_probe_uses_the_same_check(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    folder = tmp_path / "a_file" / "out"
    reason = why_not_writable(folder)
    assert reason is not None
    with pytest.raises(ConfigError) as refused:
        probe_folder(folder, "--out", target=folder / "table.csv")
    assert refused.value.key == "--out"
    assert refused.value.reason == f"cannot write {folder / 'table.csv'}: {reason} ({folder})"


def test_set_cpu_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = torch.get_num_threads()
    try:
        set_cpu_threads(None)
        assert torch.get_num_threads() == previous
        set_cpu_threads(2)
        assert torch.get_num_threads() == 2
        with pytest.raises(ConfigError, match="must be >= 1, got 0") as refused:
            set_cpu_threads(0, "--threads")
        assert refused.value.key == "--threads"
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("native", [True, False])
def test_cpu_autocast_only_where_bf16_is_native(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(environment, "cpu_has_native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cpu_autocast_bf16() is native
    assert [str(w.message) for w in caught] == ([] if native else [
        "optim.cpu_amp: this CPU has no native bf16 (AVX512-BF16/AMX); training in float32"])


def test_importing_the_environment_does_not_import_torch() -> None:
    code = "import sys, rlar.environment; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
