"""Optimizers (bitsandbytes' paged/8-bit AdamW, or torch's AdamW) and learning-rate schedules."""

from __future__ import annotations

from dataclasses import dataclass, field

import bitsandbytes as bnb
import bitsandbytes.functional as F
import torch
from transformers import get_scheduler

from forumtune.config import TrainConfig

# Every schedule warms up linearly over train.warmup_steps first; "constant" then holds the peak.
SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


STATE_BLOCK = 256  # bitsandbytes keeps one absmax per 256 values of 8-bit optimizer state


@dataclass
class _Slab:
    """The 8-bit-state parameters of one param group, device and dtype laid end to end in one buffer, each
    starting on a state block, with their gradients and state likewise: bitsandbytes' update over the
    slab is its update of each parameter (a block never spans two), in one kernel instead of one each."""

    params: list[torch.nn.Parameter]
    param: torch.Tensor
    grad: torch.Tensor
    state1: torch.Tensor
    state2: torch.Tensor
    absmax1: torch.Tensor
    absmax2: torch.Tensor
    grad_views: list[torch.Tensor] = field(default_factory=list)
    state_views: list[dict[str, torch.Tensor]] = field(default_factory=list)


def _padded(numel: int) -> int:
    return -(-numel // STATE_BLOCK) * STATE_BLOCK


class _SlabStep:
    """bitsandbytes' 8-bit AdamW with its per-parameter work done once per step. bitsandbytes launches a
    kernel per parameter (448 for LoRA on every projection of a 7B model), each behind ~50 µs of Python
    and a wait for the GPU; the GPU idles while the host queues them. Here the parameters that get 8-bit
    state become views into one buffer per param group (`_Slab`), and their gradients and state too, so a
    step is one kernel with the same arithmetic: parameters and state equal bitsandbytes' bit for bit, and
    the state dict keeps its per-parameter format. Slab gradients start as zeros and are zeroed in place,
    so a parameter autograd leaves out is updated with a zero gradient, as after `zero_grad(set_to_none=
    False)`; one set to None from outside sends that step through bitsandbytes' per-parameter update, which
    skips it. Other parameters (small ones with 32-bit state, overrides) always take the per-parameter
    update, without bitsandbytes' wait for the GPU after each."""

    def __init__(self, params, *args, use_slabs: bool = True, **kwargs):
        """`use_slabs` false keeps each parameter its own tensor (DDP and FSDP own the layout)."""
        super().__init__(params, *args, **kwargs)
        self.use_slabs = use_slabs
        # laid out now, before training allocates around them; the first step adopts the gradients
        self._slabs = self._build_slabs() if use_slabs else []

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self.initialized:
            self.check_overrides()
            self.to_gpu()
            self.initialized = True
        in_slab = {id(p) for slab in self._slabs for p in slab.params}
        for group_index, group in enumerate(self.param_groups):
            for param_index, param in enumerate(group["params"]):
                if id(param) not in in_slab:
                    self._update_one(group, param, group_index, param_index)
        for slab in self._slabs:
            self._update_slab(slab)
        return loss

    def _update_one(self, group, param, group_index, param_index) -> None:
        if param.grad is None:
            return
        if not self.state[param]:
            self.init_state(group, param, group_index, param_index)
        self.prefetch_state(param)
        self.update_step(group, param, group_index, param_index)

    def _update_slab(self, slab: _Slab) -> None:
        steps = set()
        for param, view in zip(slab.params, slab.grad_views, strict=True):
            grad = param.grad
            if grad is not None and grad is not view:  # set from outside, or made by autograd after a None
                view.copy_(grad)
                param.grad = view
            steps.add(self.state[param]["step"] if grad is not None else None)
        if len(steps) != 1 or None in steps:  # a parameter without a gradient, or steps apart after one
            for param in slab.params:
                index = self._index_of(param)
                self._update_one(self.param_groups[index[0]], param, *index)
            return
        for param in slab.params:
            self.state[param]["step"] += 1
        first = self.state[slab.params[0]]
        # the group looked up now: load_state_dict replaces the group dicts, and the scheduler sets the lr
        # in the new ones (a group kept from construction made a resumed run step at the first lr forever)
        group_index, param_index = self._index_of(slab.params[0])
        config = self.get_config(group_index, param_index, self.param_groups[group_index])
        for buffer in (slab.state1, slab.state2):
            if getattr(buffer, "is_paged", False):
                F.prefetch_tensor(buffer)
        betas = config["betas"]
        F.optimizer_update_8bit_blockwise(
            self.optimizer_name,
            slab.grad,
            slab.param,
            slab.state1,
            slab.state2,
            betas[0],
            betas[1],
            betas[2] if len(betas) >= 3 else 0.0,
            config.get("alpha", 0.0),
            config["eps"],
            first["step"],
            config["lr"],
            first["qmap1"],
            first["qmap2"],
            slab.absmax1,
            slab.absmax2,
            config["weight_decay"],
            gnorm_scale=1.0,
            skip_zeros=config["skip_zeros"],
        )

    def _index_of(self, param) -> tuple[int, int]:
        for group_index, group in enumerate(self.param_groups):
            for param_index, candidate in enumerate(group["params"]):
                if candidate is param:
                    return group_index, param_index
        raise KeyError("parameter not in this optimizer")

    def _build_slabs(self) -> list[_Slab]:
        slabs = []
        for group_index, group in enumerate(self.param_groups):
            members: dict[tuple, list[torch.nn.Parameter]] = {}
            for param_index, param in enumerate(group["params"]):
                if self._slab_eligible(group, param, group_index, param_index):
                    members.setdefault((param.device, param.dtype), []).append(param)
            slabs += [self._make_slab(params) for params in members.values() if len(params) > 1]
        return slabs

    def _slab_eligible(self, group, param, group_index, param_index) -> bool:
        config = self.get_config(group_index, param_index, group)
        state = self.state.get(param) or {}
        return (
            config["optim_bits"] == 8
            and param.numel() >= config["min_8bit_size"]
            and (group_index, param_index) not in self.mng.index2config
            and id(param) not in self.mng.pid2config
            and type(param.data) is torch.Tensor
            and param.is_contiguous()
            and not getattr(param, "is_paged", False)
            and config["max_unorm"] == 0.0
            and (not state or state["state1"].dtype == torch.uint8)
        )

    def _make_slab(self, params: list[torch.nn.Parameter]) -> _Slab:
        total = sum(_padded(p.numel()) for p in params)
        device, dtype = params[0].device, params[0].dtype
        flat = torch.zeros(total, dtype=dtype, device=device)
        slab = _Slab(
            params,
            flat,
            torch.zeros_like(flat),
            self.get_state_buffer(flat, torch.uint8),
            self.get_state_buffer(flat, torch.uint8),
            torch.zeros(total // STATE_BLOCK, dtype=torch.float32, device=device),
            torch.zeros(total // STATE_BLOCK, dtype=torch.float32, device=device),
        )
        if "dynamic" not in self.name2qmap:
            self.fill_qmap()
        offset = 0
        for param in params:
            numel, blocks = param.numel(), _padded(param.numel()) // STATE_BLOCK
            view = slab.param[offset : offset + numel].view_as(param)
            view.copy_(param.data)
            param.data = view
            grad_view = slab.grad[offset : offset + numel].view_as(param)
            slab.grad_views.append(grad_view)
            if param.grad is not None:
                grad_view.copy_(param.grad)
            param.grad = (
                grad_view  # autograd adds into it from the first backward: no second set of gradients
            )
            block = offset // STATE_BLOCK
            views = {
                "state1": slab.state1[offset : offset + numel].view_as(param),
                "state2": slab.state2[offset : offset + numel].view_as(param),
                "absmax1": slab.absmax1[block : block + blocks],
                "absmax2": slab.absmax2[block : block + blocks],
            }
            for key in ("state1", "state2"):
                buffer = getattr(slab, key)
                if getattr(buffer, "is_paged", False):
                    # bitsandbytes' paged buffers are host-typed tensors in CUDA managed memory, marked as
                    # paged: unmarked views would be copied to the GPU by its to_gpu()
                    views[key].is_paged, views[key].page_deviceid = True, buffer.page_deviceid
            slab.state_views.append(views)
            self._adopt_state(param, views)
            offset += _padded(numel)
        return slab

    def to_gpu(self):
        """bitsandbytes moves state to the parameters' device; whatever it replaced goes back into the slab."""
        super().to_gpu()
        for slab in self._slabs:
            for param, views in zip(slab.params, slab.state_views, strict=True):
                self._adopt_state(param, views)

    def _adopt_state(self, param: torch.nn.Parameter, views: dict[str, torch.Tensor]) -> None:
        """The parameter's state (loaded, or none yet) copied into its slab views, which then hold it."""
        state = self.state[param]
        for key, view in views.items():
            if state.get(key) is view:
                continue
            if key in state:
                view.copy_(state[key].reshape(view.shape))
            else:
                view.zero_()
            state[key] = view
        state.setdefault("step", 0)
        state.setdefault("qmap1", self.name2qmap["dynamic"].to(param.device))
        state.setdefault("qmap2", self.name2qmap["udynamic"].to(param.device))

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Slab gradients are zeroed in place, whatever `set_to_none` says, so that they stay views."""
        if not self._slabs:
            return super().zero_grad(set_to_none)
        in_slab = set()
        for slab in self._slabs:
            slab.grad.zero_()
            for param, view in zip(slab.params, slab.grad_views, strict=True):
                if param.grad is not view:
                    param.grad = view
                in_slab.add(id(param))
        for group in self.param_groups:
            for param in group["params"]:
                if id(param) in in_slab or param.grad is None:
                    continue
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.detach_()
                    param.grad.zero_()

    def state_dict(self):
        """bitsandbytes' state dict, with the slabs' views copied out (they would share one storage)."""
        state_dict = super().state_dict()
        if not self._slabs:
            return state_dict
        shared = {
            buffer.untyped_storage().data_ptr()
            for slab in self._slabs
            for buffer in (slab.state1, slab.state2, slab.absmax1, slab.absmax2)
        }

        def copied(value):
            if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() in shared:
                return value.clone()
            if isinstance(value, dict):
                return {key: copied(item) for key, item in value.items()}
            return value

        state_dict["state"] = {key: copied(value) for key, value in state_dict["state"].items()}
        return state_dict

    def load_state_dict(self, state_dict, move_to_device=True):
        """bitsandbytes loads each parameter's state as its own tensors; they are copied into the slabs."""
        super().load_state_dict(state_dict, move_to_device)
        for slab in self._slabs:
            for param, views in zip(slab.params, slab.state_views, strict=True):
                self._adopt_state(param, views)


class PagedAdamW8bit(_SlabStep, bnb.optim.PagedAdamW8bit):
    pass


class AdamW8bit(_SlabStep, bnb.optim.AdamW8bit):
    pass


def make_optimizer(
    model: torch.nn.Module, train: TrainConfig, device: torch.device, *, one_process: bool = True
) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = {"lr": train.learning_rate, "weight_decay": train.weight_decay}
    if train.optimizer in ("paged_adamw_8bit", "adamw_8bit"):
        # paging needs CUDA unified memory
        paged = train.optimizer == "paged_adamw_8bit" and device.type == "cuda"
        return (PagedAdamW8bit if paged else AdamW8bit)(params, use_slabs=one_process, **kwargs)
    return torch.optim.AdamW(params, **kwargs)


def make_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    return get_scheduler(
        SCHEDULES[train.lr_scheduler],
        optimizer,
        num_warmup_steps=min(train.warmup_steps, total_steps),
        num_training_steps=total_steps,
    )
