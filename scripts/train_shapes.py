"""Train the embedded default model on the shapes world, stage by stage (docs/training_shapes.md).

    python scripts/train_shapes.py data vae latents dit export    # or any subset; rerun the same command to resume

Continue from a saved model instead of from scratch (its DiT as the final weights of DiT run K; then only the later
runs' latents are computed and only the later runs trained):

    python scripts/train_shapes.py latents dit export --from-model vidgen/assets/default --as-dit-run 5

With --as-decoder-run K its VAE is also the final weights of decoder run K, and the decoder stage trains only the
runs after it.
"""

import argparse
import logging

import torch

from vidgen.model_folder import DEFAULT_MODEL_DIR
from vidgen_lab.shapes_recipe import STAGES, ShapesRecipe, run_stages, seed_from_model

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("stages", nargs="+", choices=[*STAGES, "all"])
parser.add_argument("--config", default="configs/shapes/recipe.yaml")
parser.add_argument("--run-dir", help="override the config's run_dir")
parser.add_argument("--max-steps", type=int,
                    help="override the training stages' max_steps (their last run's, when the recipe continues one)")
parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a machine shared with others)")
parser.add_argument("--export-to", default=str(DEFAULT_MODEL_DIR), help="where export writes the pipeline")
parser.add_argument("--from-checkpoint", action="store_true",
                    help="export the newest DiT checkpoint (EMA weights) instead of the final one")
parser.add_argument("--no-progress", action="store_true")
parser.add_argument("--from-model", help="first fill a fresh run_dir from this saved pipeline (with --as-dit-run)")
parser.add_argument("--as-dit-run", type=int, help="the DiT run whose final weights --from-model's DiT becomes")
parser.add_argument("--as-decoder-run", type=int,
                    help="with --from-model: the decoder run whose final weights its VAE also becomes")
args = parser.parse_args()
if (args.from_model is None) != (args.as_dit_run is None):
    parser.error("--from-model and --as-dit-run go together")
if args.as_decoder_run is not None and args.from_model is None:
    parser.error("--as-decoder-run needs --from-model")

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
if args.threads:
    torch.set_num_threads(args.threads)
recipe = ShapesRecipe.load(args.config)
if args.run_dir:
    recipe = recipe.with_run_dir(args.run_dir)
if args.from_model:
    seed_from_model(recipe, args.from_model, args.as_dit_run, args.as_decoder_run)
stages = list(STAGES) if "all" in args.stages else args.stages
run_stages(recipe, stages, export_to=args.export_to, max_steps=args.max_steps, from_checkpoint=args.from_checkpoint,
           progress=not args.no_progress)
