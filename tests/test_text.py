import torch

from tests.tiny_pipeline import tiny_tokenizer, tiny_umt5
from vidgen.text import MAX_TOKENS, TextEncoder, clean_prompt


def test_real_tokens_kept_and_hidden_states_zero_padded_to_512():
    enc = TextEncoder(tiny_umt5(), tiny_tokenizer())
    out = enc(["a red circle moves left", "the square"])
    assert out.shape == (2, MAX_TOKENS, 32)
    # The real tokens (4 and 2 words + </s>) equal the encoder run on them alone, without any padding.
    for b, words in enumerate(["a red circle moves left", "the square"]):
        ids = enc.tokenizer(words, return_tensors="pt").input_ids
        alone = enc.model(input_ids=ids).last_hidden_state[0]
        n = ids.shape[1]
        assert n == len(words.split()) + 1
        assert torch.allclose(out[b, :n], alone, atol=1e-5)
        assert torch.count_nonzero(out[b, n:]) == 0


def test_long_prompt_trimmed_to_512_tokens_and_prompt_cleaned():
    enc = TextEncoder(tiny_umt5(), tiny_tokenizer())
    out = enc("red " * 600)
    assert out.shape == (1, MAX_TOKENS, 32) and torch.all(out.abs().sum(-1) > 0)  # every position is a real token
    assert clean_prompt("  a &amp;amp;  red\n\tcircle ") == "a & red circle"
    assert torch.equal(enc("a  red\ncircle"), enc("a red circle"))


def test_save_and_load_round_trip(tmp_path):
    enc = TextEncoder(tiny_umt5(), tiny_tokenizer())
    enc.save_pretrained(tmp_path / "text_encoder", tmp_path / "tokenizer")
    loaded = TextEncoder.from_pretrained(tmp_path / "text_encoder", tmp_path / "tokenizer")
    assert torch.allclose(loaded("a blue square"), enc("a blue square"), atol=1e-6)
