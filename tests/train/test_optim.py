"""forumtune's 8-bit AdamW (bitsandbytes' update without a GPU wait per parameter) against bitsandbytes'."""

from __future__ import annotations

import bitsandbytes as bnb
import pytest
import torch

from forumtune.train.optim import AdamW8bit, PagedAdamW8bit


def initial_params() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)  # 8-bit blockwise state for the large ones, 32-bit for the small one
    return [torch.nn.Parameter(torch.randn(256, 512)), torch.nn.Parameter(torch.randn(16, 64)),
            torch.nn.Parameter(torch.randn(300, 400))]


def train_a_few_steps(optimizer_class) -> tuple[list[torch.Tensor], dict]:
    params = initial_params()
    optimizer = optimizer_class(params, lr=1e-2, weight_decay=0.01)
    generator = torch.Generator().manual_seed(1)
    for step in range(5):
        for index, param in enumerate(params):
            param.grad = None if (index == 2 and step == 1) else torch.randn(param.shape, generator=generator)
        optimizer.step()
    return [p.detach().clone() for p in params], optimizer.state_dict()


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize(("ours", "theirs"), [(AdamW8bit, bnb.optim.AdamW8bit),
                                              (PagedAdamW8bit, bnb.optim.PagedAdamW8bit)])
def test_one_wait_optimizer_gives_bitsandbytes_update_and_state(ours, theirs):
    params, state = train_a_few_steps(ours)
    ref_params, ref_state = train_a_few_steps(theirs)
    for param, ref in zip(params, ref_params, strict=True):
        assert torch.equal(param, ref)
    assert state["state"].keys() == ref_state["state"].keys()
    for key, values in state["state"].items():
        assert values.keys() == ref_state["state"][key].keys()
        for name, value in values.items():
            assert same(value, ref_state["state"][key][name]), name
    for param, start in zip(params, initial_params(), strict=True):
        assert (param - start).abs().max() > 1e-3  # every parameter was updated
