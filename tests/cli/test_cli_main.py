"""The dispatcher: ``rlar --help`` imports no subcommand module (so no torch), and lists every command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlar.cli.main import available_commands, build_parser, command_summary


def test_building_the_parser_imports_neither_torch_nor_subcommands() -> None:
    code = (
        "import sys, rlar.cli.main as m\n"
        "m.build_parser()\n"
        "heavy = sorted(n for n in ('torch', 'skimage', 'rlar.training', 'rlar.data.sources', 'rlar.cli.train')"
        " if n in sys.modules)\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_help_lists_each_command_with_its_docstring_summary(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in available_commands():
        assert name in out
    assert {"data", "radiomics", "plot", "train"} <= set(available_commands())
    assert command_summary("plot") == "training curves of one or more run folders in one PNG"


def test_the_selected_command_gets_its_full_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser("plot").parse_args(["plot", "runs/a", "--out", "c.svg"])
    assert args.run_dirs == ["runs/a"] and args.out == "c.svg" and callable(args.func)
    with pytest.raises(SystemExit):
        build_parser("data").parse_args(["data", "summary", "nosuchsource"])
    assert "invalid choice" in capsys.readouterr().err
