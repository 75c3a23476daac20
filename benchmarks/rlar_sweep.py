"""Sweep RLAR's options (space, tau, lambda_rlar, lazy every-n) against guided multitask on short training runs.

Each setting is one ``rlar.training.run.run_training`` of the same config (default: the phantom at its cpu size,
with simulated reader noise: masks and levels from a randomly drawn reader of the panel), differing only in the
method and the RLAR options. The shipped YAML's ``strategy.options`` are dropped, so a setting gets the Options
model's defaults plus exactly what the setting names. Every StepReport is recorded (the registry entry of the
strategy is wrapped for the run), so the table needs nothing from the trainer's log format:

    cosine        mean comparable cosine cos(grad_z L_seg, grad_z L_cls) (docs/interfaces.md), all steps
    cos_space     mean cosine in RLAR's own space; hinge = fraction of valid samples with an active hinge
    share         mean ||lambda grad P|| / ||grad L|| over the steps where the penalty was applied
    s/step        mean wall time of strategy.step
    test Dice, test macro-F1 (and val) from metrics.json of the run (checkpoint chosen on the inner val split)

    nice -n 5 python benchmarks/rlar_sweep.py --epochs 10 --out runs/rlar_sweep
    python benchmarks/rlar_sweep.py --config ddti --set data.root=../shared/data/ddti --settings guided default
    python benchmarks/rlar_sweep.py --report runs/rlar_sweep/sweep.json     # the table again, from saved rows
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from rlar.strategies import STRATEGIES, StepReport, Strategy
from rlar.training.config import find_config, read_yaml, resolve_raw, validate_config
from rlar.training.run import run_training

#: name -> (method, RLAR options). Options not named take the Options model's defaults.
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "guided": ("guided_mtl", {}),
    "old-default": ("rlar", {"space": "tensor", "tau": 0.0, "lambda_rlar": 0.1, "every_n_steps": 1}),
    "ch-l1-lazy4": ("rlar", {"space": "channel", "tau": 0.0, "lambda_rlar": 1.0, "every_n_steps": 4}),
    "ch-l0.1-exact": ("rlar", {"space": "channel", "tau": 0.0, "lambda_rlar": 0.1, "every_n_steps": 1}),
    "ch-l0.1-lazy4": ("rlar", {"space": "channel", "tau": 0.0, "lambda_rlar": 0.1, "every_n_steps": 4}),
    "ch-l0.3-lazy4": ("rlar", {"space": "channel", "tau": 0.0, "lambda_rlar": 0.3, "every_n_steps": 4}),
    "ch-l0.03-lazy4": ("rlar", {"space": "channel", "tau": 0.0, "lambda_rlar": 0.03, "every_n_steps": 4}),
    "t-l1-lazy4": ("rlar", {"space": "tensor", "tau": 0.0, "lambda_rlar": 1.0, "every_n_steps": 4}),
    "default": ("rlar", {}),
}
READER_NOISE = ["data.options.label_from=random_reader", "data.options.mask_from=random_reader"]


def recording(cls: type[Strategy], sink: list[tuple[StepReport, float]]) -> type[Strategy]:
    """A subclass of ``cls`` that appends (report, seconds) of every step to ``sink``."""

    class Recording(cls):  # type: ignore[valid-type, misc]
        def step(self, *args: Any, **kwargs: Any) -> StepReport:
            start = time.perf_counter()
            report = super().step(*args, **kwargs)
            sink.append((report, time.perf_counter() - start))
            return report

    Recording.__name__ = cls.__name__
    return Recording


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


def run_setting(name: str, config: str, epochs: int, overrides: list[str], out: Path, fold: int) -> dict[str, Any]:
    """Train one setting; returns its row (metrics and the step statistics)."""
    method, options = SETTINGS[name]
    path, size = find_config(config)
    raw = read_yaml(path)
    raw.setdefault("strategy", {})["options"] = {"rlar": dict(options)} if method == "rlar" else {}
    extra = [f"method={method}", f"optim.epochs={epochs}", f"output={out / name}"]
    cfg = validate_config(resolve_raw(raw, [*extra, *overrides], size))
    strategy_name = cfg.strategy.name or method
    sink: list[tuple[StepReport, float]] = []
    original = STRATEGIES[strategy_name]
    STRATEGIES[strategy_name] = recording(original, sink)
    try:
        start = time.perf_counter()
        metrics = run_training(cfg, out / name, fold=fold, progress=False)
        wall = time.perf_counter() - start
    finally:
        STRATEGIES[strategy_name] = original
    reports = [r for r, _ in sink]
    test, val = metrics.get("test", {}), metrics.get("val", {})
    return {
        "setting": name, "method": method, "options": options, "steps": len(sink),
        "cosine": _mean([r.cosine for r in reports if r.cosine is not None]),
        "cos_space": _mean([r.extra.get("cos_space", math.nan) for r in reports]),
        "hinge": _mean([r.extra.get("hinge_active", math.nan) for r in reports]),
        "penalty": _mean([r.extra.get("penalty", math.nan) for r in reports]),
        "share": _mean([r.extra.get("penalty_share", math.nan) for r in reports]),
        "s_per_step": _mean([s for _, s in sink]),
        "test_dice": test.get("dice", math.nan), "test_macro_f1": test.get("macro_f1", math.nan),
        "val_dice": val.get("dice", math.nan), "val_macro_f1": val.get("macro_f1", math.nan),
        "wall_s": wall,
    }


def _fmt(value: float, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the sweep rows ("-": not measured for that method)."""
    head = ("| setting | options | cosine | cos_space | hinge | share | s/step | test Dice | test macro-F1 | "
            "val Dice | val macro-F1 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or r["method"]
        cells = [_fmt(r["cosine"], "+.3f"), _fmt(r["cos_space"], "+.3f"), _fmt(r["hinge"], ".2f"),
                 _fmt(r["share"], ".3f"), _fmt(r["s_per_step"], ".2f"), _fmt(r["test_dice"], ".3f"),
                 _fmt(r["test_macro_f1"], ".3f"), _fmt(r["val_dice"], ".3f"), _fmt(r["val_macro_f1"], ".3f")]
        lines.append(f"| {r['setting']} | {opts} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curves(run_dirs: list[Path]) -> str:
    """Per-epoch columns of each run's log.csv (the trainer's epoch means), side by side as a markdown table."""
    keys = ["extra_penalty", "extra_cos_space", "extra_hinge_active", "val_dice", "val_macro_f1"]
    logs = {d.name: list(csv.DictReader((d / "log.csv").open())) for d in run_dirs}
    head = "| epoch | " + " | ".join(f"{name} {k.removeprefix('extra_')}" for name in logs for k in keys) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for i in range(max(len(rows) for rows in logs.values())):
        cells = []
        for rows in logs.values():
            row = rows[i] if i < len(rows) else {}
            cells += [_fmt(float(row.get(k) or "nan"), ".3f") for k in keys]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="phantom", help="shipped config name[:size] or a YAML path")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra key=value overrides")
    parser.add_argument("--no-reader-noise", action="store_true", help="phantom: train on the truth instead")
    parser.add_argument("--threads", type=int, default=1, help="training.cpu_threads of every run")
    parser.add_argument("--out", type=Path, default=Path("runs/rlar_sweep"))
    parser.add_argument("--report", nargs="+", type=Path, metavar="SWEEP_JSON",
                        help="print the table of earlier sweeps' sweep.json files (rows in the order given) and exit")
    parser.add_argument("--curves", nargs="+", type=Path, metavar="RUN_DIR",
                        help="print the per-epoch penalty, cos_space, hinge and validation metrics of runs and exit")
    args = parser.parse_args(argv)
    if args.curves:
        print(curves(args.curves))
        return
    if args.report:
        print(table([row for path in args.report for row in json.loads(path.read_text())]))
        return
    torch.set_num_threads(args.threads)
    overrides = [f"training.cpu_threads={args.threads}", *args.overrides]
    if args.config.partition(":")[0] == "phantom" and not args.no_reader_noise:
        overrides = [*READER_NOISE, *overrides]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.settings:
        row = run_setting(name, args.config, args.epochs, overrides, args.out, args.fold)
        rows.append(row)
        print(json.dumps(row), flush=True)
        (args.out / "sweep.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
