"""forumtune's 8-bit AdamW (bitsandbytes' update in one kernel per param group, without a GPU wait per
parameter) against bitsandbytes'."""

from __future__ import annotations

import bitsandbytes as bnb
import bitsandbytes.functional as F
import pytest
import torch
from safetensors.torch import save

from forumtune.train.optim import AdamW8bit, PagedAdamW8bit


def initial_params() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)  # 8-bit blockwise state for the large ones, 32-bit for the small one
    return [
        torch.nn.Parameter(torch.randn(256, 512)),
        torch.nn.Parameter(torch.randn(16, 64)),
        torch.nn.Parameter(torch.randn(300, 400)),
    ]


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


@pytest.mark.parametrize(
    ("ours", "theirs"), [(AdamW8bit, bnb.optim.AdamW8bit), (PagedAdamW8bit, bnb.optim.PagedAdamW8bit)]
)
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


class TwoLayers(torch.nn.Module):
    """Gradients made by autograd, as in training; sizes off the 256-value state blocks and one small
    parameter that keeps 32-bit state."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first = torch.nn.Linear(96, 130)
        self.second = torch.nn.Linear(130, 70, bias=False)

    def forward(self, x):
        return self.second(torch.tanh(self.first(x))).square().mean()


def train_model(
    optimizer_class,
    steps: int,
    *,
    set_to_none: bool = True,
    resume_after: int | None = None,
    warmup: bool = False,
):
    """`warmup`: the lr rises every step, set in the param groups as a scheduler sets it."""
    model = TwoLayers()
    optimizer = optimizer_class(model.parameters(), lr=1e-2, weight_decay=0.01)
    generator = torch.Generator().manual_seed(2)
    for step in range(steps):
        if step == resume_after:  # a new process: fresh model and optimizer, loaded from the saved state
            saved_params = {k: v.clone() for k, v in model.state_dict().items()}
            saved_state = optimizer.state_dict()
            model = TwoLayers()
            model.load_state_dict(saved_params)
            optimizer = optimizer_class(model.parameters(), lr=1e-2, weight_decay=0.01)
            optimizer.load_state_dict(saved_state)
        for _ in range(2):  # gradient accumulation
            model(torch.randn(8, 96, generator=generator)).backward()
        if warmup:
            for group in optimizer.param_groups:
                group["lr"] = 1e-2 * (step + 1) / steps
        optimizer.step()
        optimizer.zero_grad(set_to_none=set_to_none)
    return model, optimizer


@pytest.mark.parametrize("set_to_none", [True, False])
def test_one_update_per_group_equals_bitsandbytes_per_parameter(set_to_none, monkeypatch):
    calls = []
    update = F.optimizer_update_8bit_blockwise
    monkeypatch.setattr(
        F, "optimizer_update_8bit_blockwise", lambda *a, **k: calls.append(a[1].numel()) or update(*a, **k)
    )
    model, optimizer = train_model(AdamW8bit, 4, set_to_none=set_to_none)
    # one 8-bit update a step for both weights, each starting on a 256-value block (bitsandbytes: one per weight)
    assert calls == [12544 + 9216] * 4
    monkeypatch.setattr(F, "optimizer_update_8bit_blockwise", update)
    ref_model, ref_optimizer = train_model(bnb.optim.AdamW8bit, 4, set_to_none=set_to_none)
    for (name, value), ref in zip(model.state_dict().items(), ref_model.state_dict().values(), strict=True):
        assert torch.equal(value, ref), name
    assert same(optimizer.state_dict()["state"], ref_optimizer.state_dict()["state"])
    weights = [model.first.weight, model.second.weight]
    assert weights[0].untyped_storage().data_ptr() == weights[1].untyped_storage().data_ptr()
    assert model.first.bias.untyped_storage().data_ptr() != weights[0].untyped_storage().data_ptr()
    model(torch.randn(8, 96)).backward()  # autograd adds into the slab's gradient views, no new tensors
    assert weights[0].grad.untyped_storage().data_ptr() == weights[1].grad.untyped_storage().data_ptr()


@pytest.mark.parametrize("warmup", [False, True])
def test_state_dict_resumes_exactly_and_saves_without_shared_tensors(warmup):
    model, optimizer = train_model(AdamW8bit, 5, resume_after=3, warmup=warmup)
    ref_model, ref_optimizer = train_model(AdamW8bit, 5, warmup=warmup)
    for (name, value), ref in zip(model.state_dict().items(), ref_model.state_dict().values(), strict=True):
        assert torch.equal(value, ref), name
    state = optimizer.state_dict()
    assert same(state["state"], ref_optimizer.state_dict()["state"])
    tensors = {
        f"{index}.{key}": value
        for index, values in state["state"].items()
        for key, value in values.get("__bnb_optimizer_quant_state__", {}).items()
        if key.startswith(("state", "abs"))
    }
    assert len(tensors) == 2 * 4 + 2  # two 8-bit weights, one bias with 32-bit state
    assert save(tensors)  # safetensors refuses tensors that share memory


def test_state_replaced_before_the_first_step_returns_to_the_slab():
    """On a GPU bitsandbytes' first step moves state tensors it does not see as paged onto the device: the
    replacements are copied back into the slab, so the state dict keeps following the updates."""
    ref_model, ref_optimizer = train_model(bnb.optim.AdamW8bit, 3)
    model = TwoLayers()
    optimizer = AdamW8bit(model.parameters(), lr=1e-2, weight_decay=0.01)
    for state in optimizer.state.values():
        for key in ("state1", "state2", "absmax1", "absmax2"):
            state[key] = state[key].clone()
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        for _ in range(2):
            model(torch.randn(8, 96, generator=generator)).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert same(optimizer.state_dict()["state"], ref_optimizer.state_dict()["state"])
    for (name, value), ref in zip(model.state_dict().items(), ref_model.state_dict().values(), strict=True):
        assert torch.equal(value, ref), name
