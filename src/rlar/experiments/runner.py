"""Run an expanded grid: skip finished runs, resume interrupted ones, lock each run, in parallel or as a shard.

Per run (folder ``<root>/<arm>/seed<k>/fold<j>``):

- a readable ``metrics.json`` (:func:`rlar.runs.is_finished`: an empty or torn file does not count) and the saved
  ``config.yaml`` equal to the run's config (ignoring settings that do not
  change what is computed: device, data workers, CPU threads, output, the split file's path) -> *skipped*;
  present but different -> *conflict* (nothing is overwritten; move the folder away or fix the grid). Before
  anything is trained, :func:`check_finished_runs` refuses a grid whose finished runs conflict, so a folder never
  mixes two configs of one run (e.g. a recipe changed between sittings);
- ``checkpoints/last.pt`` present, not finished -> *resumed* (``run_training(resume=True)``);
- otherwise -> *trained* from scratch.

After training (or on a skipped run where they are missing) the run's test predictions, its external-source
predictions and, for annotator-study arms, its scores against the phantom truth are written (see
:mod:`rlar.experiments.predictions`). A run that raises is *failed* (traceback in ``<run>/error.txt``) and the grid
goes on; a run locked by another worker is *locked* and left to it.

``workers > 1`` runs independent runs in spawned processes (each gets ``max(1, cpus // workers)`` torch threads,
and with ``device="cuda"`` its own GPU, round-robin, through ``CUDA_VISIBLE_DEVICES``). ``shard=(i, n)`` takes
every n-th run starting at i, so the tasks of a cluster job array share one output folder without a scheduler.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from rlar.environment import resolve_device, set_cpu_threads
from rlar.errors import ConfigError, DataError, RlarError
from rlar.experiments.grid import ExpandedGrid, RunSpec, take_shard
from rlar.experiments.lock import LockTimeout, RunLock, held_lock
from rlar.runs import CONFIG_FILE, ERROR_FILE, GRID_FILE, GRID_SPLITS, LAST, checkpoint_file, is_finished
from rlar.training.config_diff import RESUME_FREE_KEYS
from rlar.training.config_diff import config_difference as key_difference

#: Config keys that may differ between runs without changing what is computed: the trainer's resume rule
#: (:data:`rlar.training.config_diff.RESUME_FREE_KEYS`, which holds the thread count too since issue 23) plus the
#: grid's own split file path (every run of a grid reads that one file; its path changes when the folder moves).
IGNORED_KEYS: frozenset[tuple[str, ...]] = RESUME_FREE_KEYS | {("data", "split_file")}
STATUSES = ("trained", "resumed", "skipped", "locked", "conflict", "failed")
TrainFn = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class RunResult:
    """What happened to one run of the grid."""

    label: str
    rel_dir: str
    status: str
    seconds: float
    message: str = ""


def run_overrides(expanded: ExpandedGrid, spec: RunSpec, root: Path, device: str | None) -> list[str]:
    """The ``key=value`` overrides of one run, in precedence order (see :mod:`rlar.experiments.grid`)."""
    overrides = [*expanded.grid.overrides, f"method={spec.arm.method}", *spec.arm.overrides,
                 f"training.seed={spec.seed}", f"data.fold={spec.fold}",
                 f"data.split_file={(root / GRID_SPLITS).resolve()}"]
    if device is not None:
        overrides.append(f"training.device={device}")
    return overrides


def run_config(expanded: ExpandedGrid, spec: RunSpec, root: Path, device: str | None = None) -> Any:
    """The validated :class:`~rlar.training.config.RlarConfig` of one run; errors name the arm."""
    from rlar.training.config import load_config

    path, size = expanded.grid.base_path()
    try:
        return load_config(path, run_overrides(expanded, spec, root, device), size=size)
    except ConfigError as err:
        raise ConfigError(err.key, f"{err.reason} (in arm '{spec.arm.name}')") from None


def config_difference(saved: Any, wanted: Any) -> str | None:
    """The first dotted key where two plain config dicts differ, ignoring :data:`IGNORED_KEYS`; None if equal."""
    found = key_difference(saved, wanted, ignored=IGNORED_KEYS)
    return None if found is None else ".".join(found)


def normalised_config(path: Path) -> Any:
    """A saved ``config.yaml`` passed through today's schema, so that a key added to the schema since the run was
    trained (with its default) does not count as a difference; the raw dict if today's schema refuses it."""
    from rlar.training.config import config_to_dict, validate_config

    raw = yaml.safe_load(path.read_text())
    try:
        return config_to_dict(validate_config(raw))
    except (RlarError, TypeError, ValueError):
        return raw


def finished_run_difference(run_dir: Path, wanted: Any) -> tuple[str, Any] | None:
    """For a finished run (a readable ``metrics.json``, :func:`rlar.runs.is_finished`): the first dotted key where its
    saved ``config.yaml`` differs from the plain config dict ``wanted`` (ignoring :data:`IGNORED_KEYS`), with the
    saved value there; a missing ``config.yaml`` differs at ``'config.yaml (missing)'``. None when the run agrees or
    is not finished (an empty or unparsable ``metrics.json`` is a run interrupted while writing it)."""
    if not is_finished(run_dir):
        return None
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file():
        return f"{CONFIG_FILE} (missing)", None
    saved = normalised_config(saved_path)
    found = key_difference(saved, wanted, ignored=IGNORED_KEYS)
    if found is None:
        return None
    value = saved
    for part in found:
        value = value.get(part) if isinstance(value, dict) else None
    return ".".join(found), value


def check_finished_runs(expanded: ExpandedGrid, root: Path, device: str | None = None) -> None:
    """Refuse to add runs to a folder whose finished runs were trained with another config.

    Every run of ``expanded`` that is finished (a readable ``metrics.json``) and has a ``config.yaml`` is compared with the config the grid
    resolves for it now (:func:`finished_run_difference`, the rule :func:`execute_run` applies per run). One
    difference means new runs would not be comparable with the finished ones in one table (e.g. the recipe's epochs
    changed since), so nothing is trained: ConfigError naming the run, the key and the ``--set`` that restores the
    saved value."""
    from rlar.training.config import config_to_dict

    for spec in expanded.runs():
        run_dir = root / spec.rel_dir
        if not is_finished(run_dir) or not (run_dir / CONFIG_FILE).is_file():
            continue
        found = finished_run_difference(run_dir, config_to_dict(run_config(expanded, spec, root, device)))
        if found is not None:
            key, value = found[0], json.dumps(found[1])
            raise ConfigError("--out", f"the finished run {spec.rel_dir} in {root} was trained with another "
                                       f"'{key}' ({value}); runs trained now would not be comparable with it. "
                                       f"Restore it (--set {key}={value}) or use another --out")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def merge_grid_documents(existing: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``grid.json`` after writing grid ``new`` into a folder that already holds ``existing``.

    Several grids may share one folder (``ddti_ablations`` reuses the ``ddti`` grid's rlar, vanilla and guided
    runs), so the file keeps every grid's arms and tables: those of ``new`` replace the ones with the same name,
    the others stay, in their order. ``grids`` holds every grid's config by name; ``grid`` is the last one written.
    Grids of one folder share its ``splits.json``, so their fold counts must agree.
    """
    if not existing or "grid" not in existing:
        return {**new, "grids": {new["grid"]["name"]: new["grid"]}}
    if existing.get("n_folds") != new["n_folds"]:
        raise ConfigError("n_folds", f"grid '{new['grid']['name']}' has {new['n_folds']} folds but the folder's other "
                                     f"grids have {existing.get('n_folds')}: one folder shares one split; use another --out")

    def merged(key: str) -> list[dict[str, Any]]:
        replacing = {item["name"]: item for item in new[key]}
        kept = [replacing.pop(item["name"], item) for item in existing.get(key, [])]
        return kept + list(replacing.values())

    grids = dict(existing.get("grids") or {existing["grid"]["name"]: existing["grid"]})
    grids[new["grid"]["name"]] = new["grid"]
    return {**new, "arms": merged("arms"), "tables": merged("tables"),
            "folds": sorted({*existing.get("folds", []), *new["folds"]}),
            "seeds": sorted({*existing.get("seeds", []), *new["seeds"]}), "grids": grids}


def write_grid_file(full: ExpandedGrid, root: Path, timeout_s: float = 60.0) -> Path:
    """``<root>/grid.json``: the grids' arms, tables, folds and seeds that ``rlar report`` lays out, merged with
    what other grids wrote there (:func:`merge_grid_documents`), under a lock so concurrent workers don't race."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / GRID_FILE
    with held_lock(root / ".grid", timeout_s):
        existing = json.loads(path.read_text()) if path.is_file() else None
        _atomic_write(path, json.dumps(merge_grid_documents(existing, full.to_dict()), indent=1, sort_keys=True))
    return path


def ensure_splits(expanded: ExpandedGrid, root: Path, timeout_s: float = 600.0) -> Path:
    """``<root>/splits.json``, made once for the whole grid from its first arm's config (see docs/interfaces.md).

    Concurrent shards: one takes the lock and writes the file, the others wait for it.
    """
    from rlar.training.config import load_config

    path = root / GRID_SPLITS
    root.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        return path
    try:
        with held_lock(root / ".splits", timeout_s, poll_s=1.0):
            if not path.is_file():  # another worker may have written it while this one waited
                from rlar.data.sources import open_source
                from rlar.data.splits import save_splits
                from rlar.training.run import label_space_for, prepare_splits

                spec = RunSpec(expanded.arms[0], expanded.seeds[0], 0)
                grid_path, size = expanded.grid.base_path()
                overrides = [o for o in run_overrides(expanded, spec, root, None) if not o.startswith("data.split_file")]
                cfg = load_config(grid_path, overrides, size=size)
                source = open_source(cfg.data.source, cfg.data.root, **cfg.data.options)
                folds = prepare_splits(cfg, source, label_space_for(source, cfg.data.task), root, False)
                tmp = root / f".splits.{os.getpid()}.json"
                save_splits(tmp, folds)
                os.replace(tmp, path)
    except LockTimeout:
        raise DataError(path, f"not written after {timeout_s:.0f} s; is another worker stuck making it?") from None
    return path


#: The annotator study's measured label noise per level, at the grid root (read by the report's figure).
LABEL_NOISE_FILE = "annotator_noise.json"


def ensure_label_noise(expanded: ExpandedGrid, root: Path) -> Path | None:
    """For a grid with annotator-study arms: measure each level's real label noise once (see
    :func:`rlar.experiments.readers.measure_label_noise`) on the grid's phantom, over fold 0's test images."""
    levels = list(dict.fromkeys(a.meta["level"] for a in expanded.arms if "level" in a.meta))
    path = root / LABEL_NOISE_FILE
    if not levels or path.is_file():
        return path if path.is_file() else None
    from rlar.data.splits import load_splits
    from rlar.experiments.readers import measure_label_noise

    cfg = run_config(expanded, RunSpec(expanded.arms[0], expanded.seeds[0], expanded.folds[0]), root)
    fold = load_splits(root / GRID_SPLITS)[expanded.folds[0]]
    ids = fold.get("test") or fold.get("val")
    noise = measure_label_noise(dict(cfg.data.options), levels, ids)
    _atomic_write(path, json.dumps(noise, indent=1, sort_keys=True))
    return path


def _post_steps(expanded: ExpandedGrid, spec: RunSpec, run_dir: Path, device: str) -> None:
    from rlar.experiments.predictions import ensure_test_predictions, evaluate_external, evaluate_truth

    ensure_test_predictions(run_dir, device)
    if spec.arm.evaluate_truth:
        evaluate_truth(run_dir, device)
    for ext in expanded.grid.external:
        evaluate_external(run_dir, ext.name, ext.source, ext.root, dict(ext.options), device)


def execute_run(expanded: ExpandedGrid, spec: RunSpec, root: Path, device: str | None = None,
                train_fn: TrainFn | None = None, progress: bool = False, threads: int | None = None) -> RunResult:
    """Skip, resume or train one run (module docstring), then write its predictions; never raises for a run's
    own failure (status ``failed``), so one bad run does not stop a grid."""
    start = time.perf_counter()
    run_dir = root / spec.rel_dir
    rel = str(spec.rel_dir)

    def result(status: str, message: str = "") -> RunResult:
        return RunResult(spec.label, rel, status, time.perf_counter() - start, message)

    try:
        cfg = run_config(expanded, spec, root, device)
    except RlarError as err:
        return result("failed", str(err))
    with RunLock(run_dir) as lock:
        if not lock.acquired:
            return result("locked", f"held by {lock.owner} ({lock.path})")
        try:
            from rlar.training.config import config_to_dict

            if is_finished(run_dir):
                found = finished_run_difference(run_dir, config_to_dict(cfg))
                if found is not None:
                    return result("conflict", f"finished with a different config ({found[0]}); not overwritten")
                status = "skipped"
            else:
                set_cpu_threads(threads)
                if train_fn is not None:
                    train: TrainFn = train_fn
                else:
                    from rlar.training.run import run_training

                    train = run_training
                resume = checkpoint_file(run_dir, LAST).is_file()
                train(cfg, run_dir, fold=spec.fold, resume=resume, progress=progress)
                status = "resumed" if resume else "trained"
            _post_steps(expanded, spec, run_dir, str(resolve_device(cfg.training.device)))
            (run_dir / ERROR_FILE).unlink(missing_ok=True)
            return result(status)
        except Exception as exc:  # noqa: BLE001 - recorded per run; the grid goes on with the others
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR_FILE).write_text(traceback.format_exc())
            return result("failed", f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------------------------- parallel

_WORKER_THREADS: int | None = None


def _init_worker(gpu_ids: Any, threads: int) -> None:
    """Spawned worker set-up, before torch is imported: its GPU (one id from the queue) and its thread count."""
    global _WORKER_THREADS
    if gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_ids.get())
    os.environ["OMP_NUM_THREADS"] = str(threads)
    _WORKER_THREADS = threads


def _worker_run(expanded: ExpandedGrid, spec: RunSpec, root: Path, device: str | None,
                train_fn: TrainFn | None) -> RunResult:
    return execute_run(expanded, spec, root, device, train_fn, progress=False, threads=_WORKER_THREADS)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _eta(results: list[RunResult], remaining: int, workers: int) -> str:
    worked = [r.seconds for r in results if r.status in ("trained", "resumed")]
    if not worked or remaining == 0:
        return ""
    seconds = sum(worked) / len(worked) * remaining / max(workers, 1)
    return f"about {seconds / 60:.1f} min left" if seconds >= 60 else f"about {seconds:.0f} s left"


def run_grid(expanded: ExpandedGrid, root: str | Path, *, workers: int = 1, shard: tuple[int, int] | None = None,
             device: str | None = None, train_fn: TrainFn | None = None, progress: bool = True,
             full: ExpandedGrid | None = None) -> list[RunResult]:
    """Run (this shard of) the grid into ``root``; returns one :class:`RunResult` per run, in grid order.

    ``full`` is the unrestricted grid (before ``--methods/--folds/--seeds``), written to ``grid.json`` so the report
    lays out every table even when this call runs a subset. ``train_fn`` defaults to
    :func:`rlar.training.run.run_training` (tests pass a fake); with ``workers > 1`` it must be picklable.
    """
    root = Path(root)
    if workers < 1:
        raise ConfigError("--workers", f"must be >= 1, got {workers}")
    check_finished_runs(full or expanded, root, device)
    write_grid_file(full or expanded, root)
    ensure_splits(full or expanded, root)
    runs = take_shard(expanded.runs(), shard)
    total = len(runs)
    results: dict[int, RunResult] = {}
    bar = tqdm(total=total, desc=f"grid {expanded.grid.name}", unit="run", disable=not progress,
               bar_format="{desc}: run {n_fmt} of {total_fmt} |{bar}| {elapsed} elapsed{postfix}")

    def record(index: int, res: RunResult) -> None:
        results[index] = res
        bar.update(1)
        eta = _eta(list(results.values()), total - len(results), workers)
        bar.set_postfix_str(eta, refresh=True)
        line = f"run {len(results)} of {total}: {res.label}: {res.status} ({res.seconds:.0f} s)"
        line += f" - {res.message}" if res.message else ""
        line += f"; {eta}" if eta else ""
        if progress:
            tqdm.write(line)
        else:
            print(line, flush=True)

    try:
        ensure_label_noise(full or expanded, root)
        if workers == 1:
            for index, spec in enumerate(runs):
                record(index, execute_run(expanded, spec, root, device, train_fn, progress=progress))
        else:
            _run_parallel(expanded, runs, root, workers, device, train_fn, record)
    finally:
        bar.close()
    return [results[i] for i in range(total)]


def _run_parallel(expanded: ExpandedGrid, runs: list[RunSpec], root: Path, workers: int, device: str | None,
                  train_fn: TrainFn | None, record: Callable[[int, RunResult], None]) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state; CUDA-safe
    gpu_queue = None
    if device == "cuda":
        n_gpus = _gpu_count()
        if n_gpus == 0:
            raise ConfigError("--device", "cuda requested but no GPU is visible")
        gpu_queue = ctx.Queue()
        for w in range(workers):
            gpu_queue.put(w % n_gpus)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(gpu_queue, threads)) as pool:
        pending: dict[Future[RunResult], int] = {
            pool.submit(_worker_run, expanded, spec, root, device, train_fn): i for i, spec in enumerate(runs)
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                try:
                    res = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker process died: report, keep going
                    spec = runs[index]
                    res = RunResult(spec.label, str(spec.rel_dir), "failed", 0.0, f"worker crashed: {exc}")
                record(index, res)


def summarise(results: list[RunResult]) -> str:
    """``"12 runs: 8 trained, 4 skipped"``: counts per status, in :data:`STATUSES` order."""
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    return f"{len(results)} runs: " + (", ".join(parts) if parts else "none")


__all__ = ["IGNORED_KEYS", "LABEL_NOISE_FILE", "STATUSES", "ensure_label_noise", "RunResult", "config_difference", "ensure_splits", "execute_run",
           "merge_grid_documents", "run_config", "run_grid", "run_overrides", "summarise", "write_grid_file"]
