#!/usr/bin/env bash
# The ~2-hour recipe for the shapes world (configs/shapes/recipe_2h.yaml; docs/training_shapes.md) on 2 CPU cores:
#   data and vae at 2 threads, then latents beside decoder, then dit beside decoder (one thread each), then export.
# Rerun the same command to resume (finished stages are skipped, training stages continue from their checkpoints).
#   bash scripts/train_shapes_2h.sh [EXPORT_TO]     (default: RUN_DIR/pipeline; never the shipped model's folder)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=".:scripts${PYTHONPATH:+:$PYTHONPATH}"  # scripts/: vidgen_lab
config=${CONFIG:-configs/shapes/recipe_2h.yaml}
run_dir=$(python -c "import sys; from vidgen_lab.shapes_recipe import ShapesRecipe as R
print(R.load(sys.argv[1]).root)" "$config")
export_to=${1:-$run_dir/pipeline}
stage() {
  echo "$(date -u +%FT%TZ) start: $*"
  python scripts/train_shapes.py --config "$config" --no-progress "$@"
  echo "$(date -u +%FT%TZ) done: $*"
}
# A stage that fails stops the others still running beside it (they resume when the script is rerun).
trap 'for j in $(jobs -p); do pkill -P "$j"; kill "$j"; done 2>/dev/null; true' EXIT

stage data vae --threads 2
# The latents stage first writes vae_normalized/ (seconds), the decoder's starting point, then encodes the DiT's clips.
stage latents --threads 1 &
latents=$!
while [ ! -d "$run_dir/vae_normalized" ]; do
  kill -0 "$latents" 2>/dev/null || { echo "the latents stage ended without writing vae_normalized/" >&2; exit 1; }
  sleep 5
done
stage decoder --threads 1 &
decoder=$!
wait "$latents"
stage dit --threads 1
wait "$decoder"
stage export --export-to "$export_to"
