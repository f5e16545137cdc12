"""A LoRA layer on a 4-bit base weight as one autograd function.

peft's `lora.Linear4bit` runs the base layer through bitsandbytes' own autograd function, clones its
output, then runs lora_A, lora_B (each cast from fp32 under autocast), a scaling multiply and an add:
about a dozen kernels and as many Python-level calls per projection, 224 projections in a 7B model,
three times a step with checkpointing. Measured on an H100 at 2×2048 the clone, the scaling multiply
and the add alone were 17% of the GPU time, and the host, not the GPU, set the pace.

`QLoRAMatmul` computes the same thing with the update folded into the matmul's epilogue:

    y  = x W^T + s (x_d A^T) B^T          (W dequantized from NF4/FP4, x_d = dropout(x))
    dB = s dy^T (x_d A^T)      dA = (s dy B)^T x_d      dx = dy W + [(s dy B) A  if no dropout]

W is dequantized again in backward instead of being kept (it is the size of the layer). With
`FusedLoRA.base_matmul` "fp8" the two products with W run in FP8 (kernels/fp8_matmul.py); the LoRA terms
stay in the compute dtype. When a layer is recomputed for its backward, its down projection's output is
not computed at all: in Llama-style layers it only feeds the layer's result, which the backward never
reads (27% of the layer's matmul work in the recompute). The adapter format is untouched: the same peft
module, parameters and state dict; only its forward is replaced.
Reference: peft's `lora.Linear4bit.forward`, which `use_fused_lora` falls back to whenever this path
does not apply (adapters disabled or merged, DoRA and other variants, several active adapters, LoRA
bias, single-token decoding where bitsandbytes' gemv is faster).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from forumtune import cpu_layout
from forumtune.kernels import fp8_matmul, nf4_dequant

MIN_TOKENS = 16  # below this (decoding), bitsandbytes' fused 4-bit gemv beats dequantize + matmul
# decoder layers that end in `residual + mlp.down_proj(...)`, by model_type: recomputing them for the
# backward, the down projection's output feeds only the layer's result, which the backward never reads.
# Their MLP is also the one `post_attention_layernorm` feeds (train/tiled_mlp.py relies on that).
DECODER_LAYER_OF_MODEL_TYPE = {
    "llama": "LlamaDecoderLayer",
    "mistral": "MistralDecoderLayer",
    "qwen2": "Qwen2DecoderLayer",
    "qwen3": "Qwen3DecoderLayer",
}
LAYERS_ENDING_IN_DOWN_PROJ = frozenset(DECODER_LAYER_OF_MODEL_TYPE.values())
_recompute = threading.local()


@dataclass(frozen=True)
class FusedLoRA:
    """How the fused layers run (train.dequantize_kernel sets the first)."""

    # "triton": kernels.nf4_dequant's single kernel for NF4 on CUDA (bit-identical, 1.48x faster per layer on
    # an H100); "bitsandbytes": its two CUDA kernels (scales, then weights), also where Triton cannot run
    dequantize: str = "triton"
    skip_unread_outputs: bool = True  # False: compute them anyway (the benchmark's ablation)
    # "fp8": the base's products through kernels.fp8_matmul (train.base_matmul), where the layer's activations
    # are bf16 and its sizes suit torch._scaled_mm; "bf16": dequantize and multiply in the compute dtype
    base_matmul: str = "bf16"


def is_recomputing() -> bool:
    """Whether a checkpointed layer is being recomputed only for its backward (on this thread)."""
    return getattr(_recompute, "active", False)


@contextlib.contextmanager
def recomputing_for_backward() -> Iterator[None]:
    """Inside, a checkpointed layer is being recomputed only for its backward."""
    before = getattr(_recompute, "active", False)
    _recompute.active = True
    try:
        yield
    finally:
        _recompute.active = before


def dequantize_weight(
    weight: torch.Tensor, state: Any, dtype: torch.dtype, kernel: str = "triton"
) -> torch.Tensor:
    """A packed 4-bit weight and its bitsandbytes QuantState as a dense (out, in) matrix, through `kernel`
    (FusedLoRA.dequantize). FSDP's quant_storage keeps the packed bytes in another dtype: they are viewed
    back."""
    if kernel == "triton" and nf4_dequant.supports(weight, state):
        return nf4_dequant.dequantize_nf4(weight, state, dtype)
    if weight.dtype != torch.uint8:
        weight = weight.view(torch.uint8)
    absmax = block_scales(state)
    direct = _cuda_kernels() if weight.is_cuda else None
    if direct is None:
        return torch.ops.bitsandbytes.dequantize_4bit.default(
            weight, absmax, state.blocksize, state.quant_type, list(state.shape), dtype
        )
    out = torch.empty(tuple(state.shape), dtype=dtype, device=weight.device)
    direct[1](weight, absmax, state.blocksize, state.quant_type, dtype, out=out)
    return out


def block_scales(state: Any) -> torch.Tensor:
    """The fp32 absmax of every 4-bit block, undoing double quantization (8-bit absmax + offset) when
    it is used."""
    absmax = state.absmax
    if not state.nested:
        return absmax
    direct = _cuda_kernels() if absmax.is_cuda else None
    if direct is None:
        scales = torch.ops.bitsandbytes.dequantize_blockwise.default(
            absmax, state.state2.absmax, state.state2.code, state.state2.blocksize, torch.float32
        )
    else:
        scales = torch.empty(absmax.shape, dtype=torch.float32, device=absmax.device)
        direct[0](
            absmax, state.state2.absmax, state.state2.code, state.state2.blocksize, torch.float32, out=scales
        )
    return scales.add_(state.offset)


@functools.cache
def _cuda_kernels() -> tuple[Any, Any] | None:
    """bitsandbytes' CUDA dequantize kernels without the torch.library dispatch around them, which costs
    more host time than the kernels take on the GPU (three dequantizations per projection per step). The
    same kernels as `torch.ops.bitsandbytes.dequantize_*`; None (use those) if bitsandbytes moved them."""
    try:
        from bitsandbytes.backends.cuda import ops
    except (ImportError, AttributeError):  # AttributeError: a torch without CUDA
        return None
    found = getattr(ops, "_dequantize_blockwise_impl", None), getattr(ops, "_dequantize_4bit_impl", None)
    return found if all(found) else None


def accumulable(grad: torch.Tensor) -> torch.Tensor:
    """`grad` (a view, as a backward's reshape makes) in a form autograd can add another gradient into in
    place. A view keeps its base alive, so their storage has two owners and the engine sums into a new
    tensor instead: one more hidden-state-sized tensor wherever a layer's gradients meet (the norm output's
    from q, k and v, h1's from the MLP and the residual). A detached alias has no base."""
    return grad.detach() if grad._is_view() else grad


RECOMPUTED_INPUT = (
    "_forumtune_recomputed_input"  # the attribute of an input tensor that holds its RecomputedInput
)


class RecomputedInput:
    """How the fused layers' backward gets their input back without saving it: `compute(source)`, from a
    tensor that is kept for the backward anyway (train/recomputed_norm.py: the attention's input norm,
    recomputed from the layer input). It rides on the input tensor as its `RECOMPUTED_INPUT` attribute.
    The layers that read the same input share one recompute: the first backward computes it, the last one
    lets it go."""

    def __init__(self, compute: Callable[[torch.Tensor], torch.Tensor], source: torch.Tensor):
        self.compute, self.source = compute, source
        self.users = 0
        self.value: torch.Tensor | None = None

    def take(self, source: torch.Tensor) -> torch.Tensor:
        if self.value is None:
            with torch.no_grad():
                self.value = self.compute(source)
        value = self.value
        self.users -= 1
        if self.users <= 0:
            self.value = None
        return value


class QLoRAMatmul(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        x: torch.Tensor,
        dropped_x: torch.Tensor | None,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        base_weight: torch.Tensor,
        quant_state: Any,
        bias: torch.Tensor | None,
        scale: float,
        output_unread: bool = False,
        dequantize: str = "triton",
        base_matmul: str = "bf16",
        recompute: RecomputedInput | None = None,
    ) -> torch.Tensor:
        """`output_unread`: only the saved tensors are needed (a recompute whose result nobody reads);
        the output is left unwritten. The small LoRA product is written first and the big matmul adds
        to it in its epilogue, where reading the output costs nothing (the other order re-reads and
        re-writes the whole output in a memory-bound kernel). `recompute`: the backward gets the input
        back from it instead of saving it (x without dropout only)."""
        dtype = x.dtype
        rows = x.reshape(-1, x.shape[-1])
        lora_in = rows if dropped_x is None else dropped_x.reshape(-1, x.shape[-1]).to(dtype)
        a, b = lora_a.to(dtype), lora_b.to(dtype)
        down = torch.mm(lora_in, a.t()).mul_(scale)  # s * x_d A^T
        out_features = quant_state.shape[0]
        fp8 = base_matmul == "fp8" and dtype == torch.bfloat16 and fp8_matmul.fits(quant_state)
        if output_unread:
            out = rows.new_empty((rows.shape[0], out_features))
        elif fp8:  # _scaled_mm cannot add to an output: the small LoRA product is added afterwards
            out = fp8_matmul.base_product(rows, base_weight, quant_state, bias).addmm_(down, b.t())
        else:
            out = torch.mm(down, b.t()) if bias is None else torch.addmm(bias.to(dtype), down, b.t())
            out.addmm_(rows, dequantize_weight(base_weight, quant_state, dtype, dequantize).t())
        ctx.recompute = recompute
        if recompute is not None:
            recompute.users += 1
            lora_in = recompute.source
        ctx.save_for_backward(lora_in, down, a, b)
        ctx.base_weight, ctx.quant_state, ctx.scale = base_weight, quant_state, scale
        ctx.dequantize, ctx.fp8 = dequantize, fp8
        ctx.separate_dropout = dropped_x is not None
        ctx.x_shape, ctx.x_dtype, ctx.lora_dtypes = x.shape, x.dtype, (lora_a.dtype, lora_b.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[Any, ...]:
        lora_in, down, a, b = ctx.saved_tensors
        need_x, need_dropped, need_a, need_b = ctx.needs_input_grad[:4]
        grad = grad_out.reshape(-1, grad_out.shape[-1]).to(a.dtype)
        grad_down = torch.mm(grad, b).mul_(ctx.scale)  # (tokens, r)
        if ctx.recompute is not None:
            lora_in = ctx.recompute.take(lora_in).to(ctx.x_dtype).reshape(-1, ctx.x_shape[-1])
            ctx.recompute = None
        grad_a = torch.mm(grad_down.t(), lora_in).to(ctx.lora_dtypes[0]) if need_a else None
        grad_b = torch.mm(grad.t(), down).to(ctx.lora_dtypes[1]) if need_b else None  # down holds the scale
        grad_x = grad_dropped = None
        if need_x and ctx.fp8:
            grad_x = fp8_matmul.base_input_grad(grad, ctx.base_weight, ctx.quant_state)
            if not ctx.separate_dropout:
                grad_x.addmm_(grad_down, a)
            grad_x = accumulable(grad_x.view(ctx.x_shape).to(ctx.x_dtype))
        elif need_x:
            weight = dequantize_weight(ctx.base_weight, ctx.quant_state, grad.dtype, ctx.dequantize)
            if ctx.separate_dropout:
                grad_x = torch.mm(grad, weight)
            else:  # the small product first, the big matmul adding to it (see forward)
                grad_x = torch.mm(grad_down, a).addmm_(grad, weight)
            grad_x = accumulable(grad_x.view(ctx.x_shape).to(ctx.x_dtype))
        if ctx.separate_dropout and need_dropped:
            grad_dropped = accumulable(torch.mm(grad_down, a).view(ctx.x_shape))
        return grad_x, grad_dropped, grad_a, grad_b, None, None, None, None, None, None, None, None


def fused_forward(
    module: torch.nn.Module, reference, options: FusedLoRA, x: torch.Tensor, *args: Any, **kwargs: Any
) -> torch.Tensor:
    """`module.forward` for a peft lora.Linear4bit; `reference` is the forward it replaced."""
    if (
        args
        or kwargs
        or module.disable_adapters
        or module.merged
        or x.numel() < MIN_TOKENS * x.shape[-1]
        or not _plain_single_adapter(module)
    ):
        return reference(x, *args, **kwargs)
    base = module.base_layer
    state = getattr(base.weight, "quant_state", None) or getattr(base, "quant_state", None)
    if state is None:
        return reference(x, *args, **kwargs)
    name = module.active_adapters[0]
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    recompute = getattr(x, RECOMPUTED_INPUT, None)  # read before the cast, which may make a new tensor
    x = x.to(dtype)
    dropout = module.lora_dropout[name]
    dropped = None if isinstance(dropout, torch.nn.Identity) or not module.training else dropout(x)
    unread = (
        options.skip_unread_outputs
        and getattr(module, "_forumtune_unread_in_recompute", False)
        and is_recomputing()
    )
    return QLoRAMatmul.apply(
        x,
        dropped,
        module.lora_A[name].weight,
        module.lora_B[name].weight,
        base.weight,
        state,
        base.bias,
        module.scaling[name],
        unread,
        options.dequantize,
        options.base_matmul,
        recompute if dropped is None else None,
    )


def _plain_single_adapter(module: torch.nn.Module) -> bool:
    active = module.active_adapters
    if len(active) != 1 or active[0] not in module.lora_A or active[0] in getattr(module, "lora_variant", {}):
        return False
    return module.lora_B[active[0]].bias is None


def use_fused_lora(model: torch.nn.Module, options: FusedLoRA = FusedLoRA()) -> int:
    """Give every peft LoRA layer on a 4-bit bitsandbytes base the fused forward; returns how many."""
    try:
        from peft.tuners.lora.bnb import Linear4bit as LoraLinear4bit
    except ImportError:  # peft without bitsandbytes support
        return 0
    # the fused path dequantizes the trainable layout itself, and its fallbacks run bitsandbytes' forward,
    # which on a CPU would otherwise pack the very weights the fused path reads
    cpu_layout.use_trainable_layout(model)
    unread = {
        id(layer.mlp.down_proj)
        for layer in model.modules()
        if type(layer).__name__ in LAYERS_ENDING_IN_DOWN_PROJ
        and hasattr(getattr(layer, "mlp", None), "down_proj")
    }
    fused = 0
    for module in model.modules():
        if isinstance(module, LoraLinear4bit) and not hasattr(module, "_forumtune_reference_forward"):
            module._forumtune_reference_forward = module.forward
            module.forward = functools.partial(fused_forward, module, module.forward, options)
            module._forumtune_unread_in_recompute = id(module) in unread
            fused += 1
    return fused
