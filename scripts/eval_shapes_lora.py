"""Judge a colour LoRA on the embedded default model: `python scripts/eval_shapes_lora.py FILE [--colour orange]`.

Prints a markdown table: the new colour's captions with the adapter; the world's own captions without and with it on
the same prompts and noise (scripts/vidgen_lab/shapes_lora_eval.py).
"""

import argparse

import torch

from vidgen_lab.shapes_lora_eval import LoRAEvalConfig, evaluate_lora, lora_file, to_markdown
from vidgen.pipeline import VideoPipeline

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("lora", help="a LoRA .safetensors (e.g. the one `vidgen train` exports)")
    parser.add_argument("--colour", default="orange")
    parser.add_argument("--new-clips", type=int, default=LoRAEvalConfig.new_clips)
    parser.add_argument("--seen-clips", type=int, default=LoRAEvalConfig.seen_clips)
    parser.add_argument("--heldout-clips", type=int, default=LoRAEvalConfig.heldout_clips)
    parser.add_argument("--seed", type=int, default=LoRAEvalConfig.seed)
    args = parser.parse_args()
    cfg = LoRAEvalConfig(colour=args.colour, new_clips=args.new_clips, seen_clips=args.seen_clips,
                         heldout_clips=args.heldout_clips, seed=args.seed)
    torch.set_grad_enabled(False)
    pipe = VideoPipeline.from_pretrained(progress=False)
    result = evaluate_lora(pipe, lora_file(args.lora), cfg)
    print(to_markdown(result, cfg))
    print(f"\n{result.seconds:.0f} s")
