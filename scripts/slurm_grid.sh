#!/bin/bash
# Run an rlar experiment grid as a Slurm job array: task i of n takes every n-th run of the grid (--shard i/n)
# and writes into one shared folder. Runs already finished are skipped, interrupted ones resume, and a lock file
# per run keeps two tasks off the same run, so resubmitting the same array after a time-out continues the grid.
#
#   sbatch --array=0-7 scripts/slurm_grid.sh ddti /shared/runs/ddti_grid --set data.root=/shared/data/ddti
#   rlar report /shared/runs/ddti_grid            # once every task has finished
#
# Arguments: GRID (shipped grid name or YAML file), OUT (shared folder), then any extra `rlar experiment` flags.
#SBATCH --job-name=rlar-grid
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=08:00:00
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail

GRID=${1:?usage: sbatch --array=0-N scripts/slurm_grid.sh GRID OUT [rlar experiment flags...]}
OUT=${2:?usage: sbatch --array=0-N scripts/slurm_grid.sh GRID OUT [rlar experiment flags...]}
shift 2

TASK=${SLURM_ARRAY_TASK_ID:?run this script through sbatch --array}
COUNT=${SLURM_ARRAY_TASK_COUNT:?run this script through sbatch --array}

# One GPU per task (Slurm sets CUDA_VISIBLE_DEVICES); torch threads follow the CPUs Slurm gave the task.
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
exec rlar experiment --config "$GRID" --out "$OUT" --shard "$TASK/$COUNT" --device cuda --no-progress "$@"
