#!/usr/bin/env bash
# The 3-seed DDTI grid (issue 20), resumable over as many invocations and machines as it takes.
#
#   scripts/ddti_seeds_grid.sh DDTI_ROOT [OUT] [extra rlar experiment flags...]
#   e.g. scripts/ddti_seeds_grid.sh ../shared/data/ddti runs/ddti_seeds --workers 2            # a 2-core CPU
#        scripts/ddti_seeds_grid.sh /data/ddti runs/ddti_seeds --device cuda --workers 1        # a GPU machine
#
# 1. OUT gets the committed grid's split (docs/results/ddti/ddti_grid/splits.json), so every run is paired with the
#    committed one-seed grid on the same test images.
# 2. Seed 0 of the arms that today's method fixes do not touch (seg_only, cls_only, vanilla_mtl, pcgrad, cagrad,
#    nashmtl, uncertainty: no radiomics target, hence the same augmentation draws, the same network inputs and the
#    same update; checked in docs/results/ddti_seeds/README.md) is copied from the committed grid; the runner checks
#    their saved config against today's and refuses a difference.
# 3. Runs finished in earlier sittings (docs/results/ddti_seeds/ddti_grid, committed without checkpoints) are copied in.
# 4. `rlar experiment` trains what is missing, most important arms first (vanilla, guided, rlar), seed by seed;
#    a killed invocation resumes from the last checkpoint of each unfinished run.
# Afterwards: scripts/ddti_seeds_grid.sh --collect OUT copies the finished runs (no checkpoints) back into
# docs/results/ddti_seeds/ddti_grid for the next sitting, and `rlar report OUT` writes the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
COMMITTED=docs/results/ddti/ddti_grid
SEEDS_DIR=docs/results/ddti_seeds/ddti_grid
if [[ "${1:-}" == "--collect" ]]; then
  OUT=${2:?usage: scripts/ddti_seeds_grid.sh --collect OUT}
  mkdir -p "$SEEDS_DIR"
  cp "$OUT/splits.json" "$SEEDS_DIR/"
  [[ -f "$OUT/grid.json" ]] && cp "$OUT/grid.json" "$SEEDS_DIR/"
  for metrics in "$OUT"/*/seed*/fold*/metrics.json; do
    run=$(dirname "$metrics"); rel=${run#"$OUT"/}
    # seed 0 of the untouched arms is the committed grid's own run: not copied twice
    [[ -f "$COMMITTED/$rel/metrics.json" ]] && cmp -s "$COMMITTED/$rel/metrics.json" "$metrics" && continue
    rm -rf "${SEEDS_DIR:?}/$rel"; mkdir -p "$SEEDS_DIR/$rel"
    cp -r "$run/." "$SEEDS_DIR/$rel/"
    rm -rf "$SEEDS_DIR/$rel/checkpoints" "$SEEDS_DIR/$rel/tensorboard"
  done
  echo "collected $(find "$SEEDS_DIR" -name metrics.json | wc -l) finished runs into $SEEDS_DIR"
  exit 0
fi
ROOT=${1:?usage: scripts/ddti_seeds_grid.sh DDTI_ROOT [OUT] [rlar experiment flags]}
OUT=${2:-runs/ddti_seeds}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$OUT"
[[ -f "$OUT/splits.json" ]] || cp "$COMMITTED/splits.json" "$OUT/"
for arm in seg_only cls_only vanilla_mtl pcgrad cagrad nashmtl uncertainty; do
  [[ -d "$OUT/$arm/seed0" ]] || { mkdir -p "$OUT/$arm"; cp -r "$COMMITTED/$arm/seed0" "$OUT/$arm/"; }
done
if [[ -d "$SEEDS_DIR" ]]; then
  (cd "$SEEDS_DIR" && find . -name metrics.json) | while read -r metrics; do
    rel=$(dirname "${metrics#./}")
    [[ -f "$OUT/$rel/metrics.json" ]] || { mkdir -p "$OUT/$rel"; cp -r "$SEEDS_DIR/$rel/." "$OUT/$rel/"; }
  done
fi
for seed in 0 1 2; do
  for arms in vanilla_mtl,guided_mtl,rlar seg_only,cls_only,repmtl pcgrad,cagrad,nashmtl,uncertainty; do
    rlar experiment --config ddti --set "data.root=$ROOT" --methods "$arms" --seeds "$seed" --out "$OUT" \
      --no-progress "$@"
  done
done
