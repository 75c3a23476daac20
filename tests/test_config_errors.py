"""One translator from pydantic's ValidationError to ConfigError (``rlar.errors.config_error_from``), one wording."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rlar.errors import ConfigError, config_error_from

SRC = Path(__file__).resolve().parents[1] / "src" / "rlar"

#: Files still allowed their own translator, each with the reason; empty this as they switch.
PENDING: dict[str, str] = {}

#: What a hand-written translator reads from a ValidationError.
TRANSLATOR = re.compile(r"\.errors\(\)|extra_forbidden|\[\s*[\"']loc[\"']\s*\]")


def test_no_other_translator_in_src() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "errors.py" or rel in PENDING:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if TRANSLATOR.search(line):
                found.append(f"{rel}:{number}: {line.strip()}")
    assert not found, "pydantic errors are translated by rlar.errors.config_error_from only:\n" + "\n".join(found)


def test_pending_files_exist() -> None:
    for rel in PENDING:
        assert (SRC / rel).is_file(), f"{rel} no longer exists: drop it from PENDING"


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(1, ge=1)
    lr: float = 0.1


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # mypy (no pydantic plugin) reads _Inner's Field(1, ge=1) default as a required argument
    optim: _Inner = Field(default_factory=_Inner)  # type: ignore[arg-type]
    maybe: _Inner | None = None


def _error(raw: dict[str, Any], prefix: str = "", **kwargs: Any) -> ConfigError:
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate(raw)
    return config_error_from(info.value, prefix, **kwargs)


def test_unknown_key_names_the_full_key_suggests_and_lists() -> None:
    err = _error({"optim": {"epocs": 3}}, "section", model=_Outer, what="the test")
    assert err.key == "section.optim.epocs"
    assert err.reason == "unknown key for the test; did you mean 'optim.epochs'? (accepted: epochs, lr)"
    err = _error({"maybe": {"lrr": 3}}, model=_Outer)  # through an optional section
    assert err.key == "maybe.lrr" and err.reason == "unknown key; did you mean 'maybe.lr'? (accepted: epochs, lr)"
    assert _error({"zzz": 1}).reason == "unknown key"  # without the model: no list


def test_bad_value_gives_the_message_and_the_input() -> None:
    err = _error({"optim": {"epochs": 0, "lr": "x"}}, model=_Outer)
    assert err.key == "optim.epochs"
    assert err.reason == "Input should be greater than or equal to 1 (got 0); and 1 more error(s)"
    assert _error({"optim": {"lr": "x" * 200}}).reason.endswith("...)")  # long inputs are shortened


def test_error_types_are_the_callers() -> None:
    class Unknown(ConfigError):
        pass

    class Bad(ConfigError):
        pass

    assert type(_error({"zzz": 1}, error_type=Bad, unknown_type=Unknown)) is Unknown
    assert type(_error({"optim": {"epochs": 0}}, error_type=Bad, unknown_type=Unknown)) is Bad
    assert type(_error({"zzz": 1}, error_type=Bad)) is Bad


def test_a_command_line_option_is_named_as_an_option_not_a_config_key() -> None:
    from rlar.errors import ConfigError

    assert str(ConfigError("--port", "must be in 1..65535")) == "option '--port': must be in 1..65535"
    assert str(ConfigError("optim.lr", "must be > 0")) == "config key 'optim.lr': must be > 0"
