"""The shapes world's small text encoder: a word-level tokenizer and a tiny UMT5 encoder, in `transformers` formats.

Saved exactly as Wan's text side is (`tokenizer/` and `text_encoder/` folders), so one loading path —
`AutoTokenizer.from_pretrained` and `UMT5EncoderModel.from_pretrained` — serves both this model and Wan's UMT5-XXL.
Everything is built locally from the world's vocabulary: nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vidgen.files import atomic_folder
from vidgen.shapes.world import BACKGROUNDS, CAPTION_TEMPLATE, COLOURS, DIRECTIONS, SHAPES

# T5's special-token layout: pad 0 (also the decoder start), eos 1, unk 2.
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
MAX_LENGTH = 512  # as Wan tokenizes: pad or truncate to 512 tokens

# A few generic words beyond the world's own, so ordinary phrasing of a prompt is not all <unk>.
GENERIC_WORDS = (
    "an the and of in with to is are at from over into onto by along across toward towards moves move slowly quickly "
    "fast slow small big large little one shape object ball box video clip image picture frame scene colour color "
    "colored coloured dark light bright plain solid flat against no not"
).split()


@dataclass(frozen=True)
class TextEncoderConfig:
    """A tiny UMT5 encoder. `d_model` is the text width the DiT's text embedding must take."""

    d_model: int = 128
    d_kv: int = 32
    d_ff: int = 256
    num_layers: int = 2
    num_heads: int = 4
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128


TEXT_ENCODER_PRESETS: dict[str, TextEncoderConfig] = {
    "shapes-tiny": TextEncoderConfig(),
    "shapes-small": TextEncoderConfig(d_model=256, d_kv=64, d_ff=512, num_layers=2, num_heads=4),
}


def vocabulary() -> list[str]:
    """Special tokens, then the world's words, then generic words: lower-case, no punctuation, no duplicates."""
    template_words = [w for w in CAPTION_TEMPLATE.split() if not w.startswith("{")]
    words = [PAD, EOS, UNK]
    for w in [*template_words, *COLOURS, *SHAPES, *DIRECTIONS, *BACKGROUNDS, *GENERIC_WORDS]:
        if w not in words:
            words.append(w)
    return words


def build_tokenizer():
    """A `PreTrainedTokenizerFast` over `vocabulary()`: lower-cases, turns punctuation into spaces, splits on
    whitespace, spells "grey" "gray", maps unknown words to <unk>, and appends </s> when `add_special_tokens` (as T5
    does)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\w\s]|_"), " "),
         normalizers.Replace(Regex(r"\bgrey\b"), "gray")]
    )
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=MAX_LENGTH,
        padding_side="right", truncation_side="right",
    )


def build_text_encoder(config: TextEncoderConfig | str = "shapes-tiny", seed: int = 0, vocab_size: int | None = None):
    """A randomly initialised `UMT5EncoderModel` (seeded; the global RNG state is restored afterwards)."""
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    if isinstance(config, str):
        if config not in TEXT_ENCODER_PRESETS:
            raise ValueError(f"unknown text encoder preset {config!r}; known: {sorted(TEXT_ENCODER_PRESETS)}")
        config = TEXT_ENCODER_PRESETS[config]
    hf_config = UMT5Config(
        vocab_size=vocab_size or len(vocabulary()),
        d_model=config.d_model, d_kv=config.d_kv, d_ff=config.d_ff, num_layers=config.num_layers,
        num_heads=config.num_heads, relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UMT5EncoderModel(hf_config)
    return model.eval()


def build_shapes_text_encoder(
    folder: str | Path, seed: int = 0, config: TextEncoderConfig | str = "shapes-tiny", *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Save the tokenizer and a seeded random encoder to `folder/tokenizer` and `folder/text_encoder`.

    Each subfolder appears complete or not at all; existing ones are an error unless `overwrite`. Returns both paths.
    """
    folder = Path(folder)
    targets = {"tokenizer": folder / "tokenizer", "text_encoder": folder / "text_encoder"}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing} already exist; pass overwrite=True to replace them or choose another folder")
    tokenizer = build_tokenizer()
    model = build_text_encoder(config, seed, vocab_size=len(tokenizer))
    folder.mkdir(parents=True, exist_ok=True)
    for name, obj in (("tokenizer", tokenizer), ("text_encoder", model)):
        with atomic_folder(targets[name]) as tmp:
            obj.save_pretrained(tmp)
            if name == "tokenizer":
                _portable_tokenizer_class(tmp / "tokenizer_config.json")
    return targets["tokenizer"], targets["text_encoder"]


def _portable_tokenizer_class(config_path: Path) -> None:
    """Name the class `PreTrainedTokenizerFast`: transformers 5 saves its own alias `TokenizersBackend`, which
    transformers 4 cannot resolve, while both resolve the older name to the same fast tokenizer."""
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
