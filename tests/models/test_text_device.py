"""Regression tests for issue 10, item 8 (one device policy) and the text/tiny model checks."""

from __future__ import annotations

import pytest
import torch

from toolkit._backend import resolve_device, use_backend
from toolkit.models import TinyTransformer
from toolkit.models.text import TextModel, tiny_tokenize

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.skipif(not NO_CUDA, reason="checks the message on a machine without CUDA")
def test_text_model_cuda_without_gpu_is_a_clear_error():
    # Was torch's AssertionError "Torch not compiled with CUDA enabled".
    with pytest.raises(ValueError, match=r"device='cuda' needs a CUDA GPU"):
        TextModel("tiny", device="cuda")


@pytest.mark.parametrize("bad, exc", [("gpu", ValueError), (5, TypeError), ("meta", ValueError)])
def test_text_model_invalid_device(bad, exc):
    with pytest.raises(exc, match=r"^device must be"):
        TextModel("tiny", device=bad)


def test_toolkit_device_is_honoured(monkeypatch):
    monkeypatch.setenv("TOOLKIT_DEVICE", "cpu")
    assert TextModel("tiny").device == torch.device("cpu")
    monkeypatch.setenv("TOOLKIT_DEVICE", "bogus")
    with pytest.raises(ValueError, match=r"TOOLKIT_DEVICE must be one of"):
        TextModel("tiny")
    if NO_CUDA:
        monkeypatch.setenv("TOOLKIT_DEVICE", "cuda")
        with pytest.raises(ValueError, match=r"backend 'cuda' \(TOOLKIT_DEVICE"):
            TextModel("tiny")
    # an explicit argument wins over the setting
    assert TextModel("tiny", device="cpu").device == torch.device("cpu")


def test_resolve_device_policy(monkeypatch):
    monkeypatch.delenv("TOOLKIT_DEVICE", raising=False)
    gpu = torch.cuda.is_available()
    assert resolve_device(None) == resolve_device("auto") == torch.device("cuda" if gpu else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    with use_backend("cpu"):
        assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^where must be"):
        resolve_device("tpu", name="where")


def test_tiny_tokenize_vocab_of_one_is_refused():
    with pytest.raises(ValueError, match=r"vocab_size must satisfy 2 <= vocab_size"):
        tiny_tokenize("hi", vocab_size=1)
    tokens, ids = tiny_tokenize("a b", vocab_size=2)
    assert ids == [0, 1, 1] and tokens == ["[CLS]", "a", "b"]


def test_tiny_seed_range():
    with pytest.raises(ValueError, match=r"seed must satisfy 0 <= seed <= 18446744073709551615"):
        TinyTransformer(seed=2**64)
    TinyTransformer(seed=2**64 - 1)  # the largest seed torch accepts
    with pytest.raises(ValueError, match=r"^seed must satisfy"):
        TinyTransformer().example_ids(seed=-1)


def test_tiny_padding_mask_values():
    model = TinyTransformer(seed=0)
    ids = model.example_ids(batch=1, length=4)
    with pytest.raises(ValueError, match=r"attention_mask must hold only 0/1"):
        model(ids, torch.tensor([[1.0, 1.0, 0.5, 0.0]]))
    with pytest.raises(ValueError, match=r"attention_mask must have the shape of ids"):
        model(ids, torch.ones(1, 3))
    # 0/1 floats, ints and bools mean the same padding
    h_bool = model(ids, torch.tensor([[True, True, False, False]]))
    h_float = model(ids, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    assert torch.equal(h_bool, h_float)
