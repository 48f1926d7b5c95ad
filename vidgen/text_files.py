"""A text encoder's and tokenizer's folders read through `transformers`, each broken file named in one WeightsError.

transformers loads a checkpoint that lacks tensors, or holds them at the wrong shape, by initialising those weights at
random and logging a report; here that is an error. Its own errors for an unreadable file (a safetensors header, a cut
JSON file) do not say which file; the headers are checked first, and a failed tokenizer load is traced to its file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from causal_vae.io import (
    FIX, WeightsError, check_safetensors, dtype_mismatch, mismatch_error, read_json, safetensors_files, shape_mismatch,
)

_TORCH_NAMES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64"}


def load_encoder(folder: Path, dtype: torch.dtype, model_class=None) -> torch.nn.Module:
    """`AutoModelForTextEncoding` (or `model_class`, a transformers model class) from `folder`, refusing weights that
    are unreadable, missing, mis-shaped, or integer where the model holds floating-point numbers."""
    from transformers import AutoModelForTextEncoding
    from transformers.utils import logging as hf_logging

    model_class = model_class or AutoModelForTextEncoding
    if (folder / "config.json").is_file():
        read_json(folder / "config.json")  # a cut config.json is named here, not as transformers' OSError
    files = safetensors_files(folder)
    if folder.is_dir() and not files and not any(folder.glob("*.bin")):
        raise FileNotFoundError(f"no encoder weights in {folder}: expected model.safetensors (or the shards a "
                                "model.safetensors.index.json names)")
    not_float: dict[str, str] = {}  # checkpoint key -> its dtype, from the headers ("I64", "BOOL", ...)
    for file in files:
        check_safetensors(file)
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                kind = f.get_slice(key).get_dtype()
                if not kind.startswith(("F", "BF")):  # F64, F32, F16, BF16, F8_*: floating point
                    not_float[key] = _TORCH_NAMES.get(kind, kind)
    # A problem names the one weights file, or the index that lists the shards.
    where = files[0] if len(files) == 1 else next(iter(sorted(folder.glob("*.safetensors.index.json"))), folder)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report would precede the error below, which says the same in one line
    try:
        # ignore_mismatched_sizes: mismatches come back in the loading info instead of as a RuntimeError
        model, info = model_class.from_pretrained(str(folder), dtype=dtype, output_loading_info=True,
                                                               ignore_mismatched_sizes=True)
    finally:
        hf_logging.set_verbosity(level)
    expected = model.state_dict()
    missing = sorted(info.get("missing_keys") or ())
    shapes = [shape_mismatch(k, file_shape, model_shape)
              for k, file_shape, model_shape in sorted(info.get("mismatched_keys") or ())]
    dtypes = [dtype_mismatch(k, kind) for k, kind in sorted(not_float.items())
              if k in expected and expected[k].is_floating_point()]
    if missing or shapes or dtypes:
        # Unexpected keys alone are tolerated, as transformers tolerates them (e.g. a full UMT5's decoder); listed
        # here only beside a real problem.
        unexpected = sorted(info.get("unexpected_keys") or ())
        raise mismatch_error(where, f"the config's {type(model).__name__}", missing, unexpected, shapes, dtypes)
    return model


def load_tokenizer(folder: Path):
    """`AutoTokenizer` from `folder`. When that fails and one of the folder's files does not read on its own, a
    WeightsError naming that file; otherwise transformers' own error."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # tokenizers raises a bare Exception for a tokenizer.json of the wrong structure
        broken = _broken_tokenizer_file(folder)
        if broken is None:
            raise
        raise broken from e


def _broken_tokenizer_file(folder: Path) -> WeightsError | None:
    """The first of the folder's tokenizer files that does not read on its own, as an error naming it."""
    try:
        for path in sorted(folder.glob("*.json")):
            read_json(path)
    except WeightsError as e:
        return e
    path = folder / "tokenizer.json"
    if path.is_file():
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_file(str(path))
        except Exception as e:
            return WeightsError(path, f"cannot read tokenizer {path}: {_first_line(e)}; {FIX}")
    models = sorted(folder.glob("*.model"))  # sentencepiece, e.g. T5's spiece.model
    if not models:
        return None
    try:
        import sentencepiece
    except ImportError:
        return None
    for path in models:
        if path.stat().st_size == 0:
            return WeightsError(path, f"cannot read sentencepiece model {path}: the file is empty (0 bytes); {FIX}")
        try:
            sentencepiece.SentencePieceProcessor(model_file=str(path))
        except (RuntimeError, OSError) as e:
            return WeightsError(path, f"cannot read sentencepiece model {path}: {_first_line(e)}; {FIX}")
    return None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
