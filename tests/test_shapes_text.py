import pytest
import torch

from vidgen.shapes.text import MAX_LENGTH, build_shapes_text_encoder, build_tokenizer, vocabulary
from vidgen.shapes.world import all_captions


def _encode(tokenizer, prompts):
    # Exactly as diffusers' WanPipeline tokenizes.
    return tokenizer(prompts, padding="max_length", max_length=MAX_LENGTH, truncation=True, add_special_tokens=True,
                     return_attention_mask=True, return_tensors="pt")


def test_tokenizer_covers_the_world_and_maps_unknown_words_to_unk():
    tok = build_tokenizer()
    vocab = vocabulary()
    assert vocab[:3] == ["<pad>", "</s>", "<unk>"] and len(set(vocab)) == len(vocab)
    assert all(w == w.lower() and w.isalnum() for w in vocab[3:])
    for text in all_captions():
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids and ids[-1] == tok.eos_token_id and len(ids) == len(text.split()) + 1
    assert tok("A RED circle, moving left!")["input_ids"] == tok("a red circle moving left")["input_ids"]
    assert tok("grey")["input_ids"] == tok("gray")["input_ids"]
    ids = tok("a red zebra jumping over the moon")["input_ids"]
    assert ids.count(tok.unk_token_id) == 3 and tok.convert_ids_to_tokens(ids[:2]) == ["a", "red"]
    batch = _encode(tok, ["a red circle", "", "word " * 600])
    assert batch["input_ids"].shape == (3, MAX_LENGTH)
    assert batch["attention_mask"].sum(1).tolist() == [4, 1, MAX_LENGTH]  # "" is just </s>; long input truncated
    assert (batch["input_ids"][0, 4:] == tok.pad_token_id).all()


def test_saved_folders_reload_with_the_standard_classes(tmp_path):
    from transformers import AutoTokenizer, UMT5EncoderModel

    tok_dir, enc_dir = build_shapes_text_encoder(tmp_path / "model", seed=0)
    assert (tok_dir.name, enc_dir.name) == ("tokenizer", "text_encoder")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    enc = UMT5EncoderModel.from_pretrained(enc_dir).eval()
    assert enc.config.vocab_size == len(tok) and enc.config.d_model == 128
    batch = _encode(tok, ["a red circle moving right on a black background",
                          "a blue square moving left on a white background", "a zebra"])
    with torch.no_grad():
        h = enc(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert h.shape == (3, MAX_LENGTH, 128) and torch.isfinite(h).all()
    assert not torch.allclose(h[0, :10], h[1, :10], atol=1e-3)

    # Seeded: the same seed rebuilds the same weights, another seed does not.
    same = UMT5EncoderModel.from_pretrained(build_shapes_text_encoder(tmp_path / "again", seed=0)[1])
    other = UMT5EncoderModel.from_pretrained(build_shapes_text_encoder(tmp_path / "other", seed=1)[1])
    w = enc.state_dict()["shared.weight"]
    assert torch.equal(w, same.state_dict()["shared.weight"])
    assert not torch.equal(w, other.state_dict()["shared.weight"])
    with pytest.raises(FileExistsError, match="overwrite"):
        build_shapes_text_encoder(tmp_path / "model", seed=0)
