"""Training: validated configs, one-run orchestration, the trainer, checkpoints and data-parallel helpers."""

from rlar.training.config import RlarConfig, load_config
from rlar.training.run import run_training

__all__ = ["RlarConfig", "load_config", "run_training"]
