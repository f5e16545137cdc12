"""bitsandbytes' two CPU layouts for a 4-bit weight, and which one each use of a model gets.

On a CPU, bitsandbytes (0.49 and later) keeps a `Linear4bit` weight in one of two layouts:

- trainable: the layout it quantizes to and saves. Each matmul dequantizes the weight to the compute
  dtype (fp32 or bf16) and multiplies in it; autograd runs through it. The reference.
- packed: the 4-bit codes re-interleaved for an AVX512-BF16 kernel, the block scales turned into bf16
  (double quantization undone), products in bf16. It has no backward, and its way back (bitsandbytes
  unpacks a layer when it is saved) quantizes the scales again: the weights that come back are not the
  weights that were loaded.

Left to itself, bitsandbytes packs a layer the first time it runs in eval mode on input that needs no
gradient, on every CPU with AVX512-BF16. In training that is the eval-loss pass: the steps after it ran
on a layer with no backward and on rounded scales, and a resumed run drifted from an uninterrupted one.
So forumtune decides the layout per model, here, and nowhere else:

- `use_trainable_layout`: every model forumtune loads starts in it (train.loading.load_base_model),
  and whatever needs exact weights keeps it: training with its eval-loss pass, checkpoints, resume, eval
  losses, the fused LoRA path and its fallbacks. A model already packed is refused, not unpacked.
- `use_packed_layout_for_generation`: eval's answers and chat, when nothing needs the trainable layout
  afterwards, where bitsandbytes has the kernel. Generating one token at a time, the trainable layout
  dequantizes each whole weight for every token; the packed kernel reads the 4-bit codes directly.
  Measured with benchmarks/cpu_layouts.py (results/cpu-layouts.json: an AMD EPYC with AVX512-BF16, one
  thread, bitsandbytes 0.50.2 without the optional `kernels` package): one token through a 4096×4096 NF4
  layer took 100 ms (fp32 compute) / 48 ms (bf16) trainable against 1.0 / 0.95 ms packed, through
  4096→14336 228 / 131 ms against 2.7 / 2.2 ms; at 64 tokens packed was 5.5× (fp32) / 2.3× (bf16) faster
  on the large projections; a random 8-layer, 1024-wide Mistral generated 32 / 35 new tokens a second
  packed against 12 / 13 trainable. Outputs differ by 3e-3 relative (bf16 products):
  fine for answers, not for losses compared with training's, which therefore stay trainable.

Where bitsandbytes has no CPU kernel for the packed layout, generation stays trainable: it registers
one only on a CPU with AVX512-BF16 (its C code uses vdpbf16ps, with no fallback for other CPUs).
"""

from __future__ import annotations

import torch

PACKED_BLOCK_ROWS = 32  # bitsandbytes packs 32 output rows together; layers with fewer rows cannot be packed


class PackedWeightError(RuntimeError):
    """A model whose 4-bit weights were already packed reached code that needs the trainable layout."""


def linear_4bit_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    from bitsandbytes.nn import Linear4bit

    return {name: module for name, module in model.named_modules() if isinstance(module, Linear4bit)}


def is_packed(layer: torch.nn.Module) -> bool:
    state = getattr(layer.weight, "quant_state", None)
    return bool(getattr(state, "packing_format_for_cpu", False))


def packed_kernel_available() -> bool:
    """Whether bitsandbytes registered its CPU kernel for the packed layout (it does on AVX512-BF16 CPUs).
    Without it a packed weight would reach its generic 4-bit matmul, which reads it as the trainable one."""
    import bitsandbytes  # noqa: F401  (registers its ops)

    return torch._C._dispatch_has_kernel_for_dispatch_key("bitsandbytes::gemv_4bit", "CPU")


def packable(layer: torch.nn.Module) -> bool:
    """bitsandbytes' packing needs whole blocks of 32 rows and of `blocksize` inputs per row; it fails
    on smaller layers (e.g. a 16-row key projection of a tiny test model)."""
    state = getattr(layer.weight, "quant_state", None)
    if state is None or len(state.shape) != 2:
        return False
    rows, inputs = state.shape
    return rows % PACKED_BLOCK_ROWS == 0 and inputs % state.blocksize == 0


def use_trainable_layout(model: torch.nn.Module) -> None:
    """bitsandbytes will not pack any 4-bit layer of `model`; raises PackedWeightError if one already is."""
    layers = linear_4bit_layers(model)
    packed = [name for name, layer in layers.items() if is_packed(layer)]
    if packed:
        raise PackedWeightError(
            f"{len(packed)} 4-bit layers (the first: {packed[0]}) were packed for CPU inference, which rounded "
            "their scales to bf16; that cannot be undone exactly. Load the model again for training or eval loss."
        )
    for layer in layers.values():
        layer.support_avx512bf16_for_cpu = False


def use_packed_layout_for_generation(model: torch.nn.Module) -> bool:
    """bitsandbytes packs each 4-bit layer of `model` it can at its next CPU forward without gradients,
    where it has the kernel; nothing may need the trainable layout afterwards. Returns whether it will."""
    available = packed_kernel_available()
    layers = linear_4bit_layers(model).values()
    for layer in layers:
        layer.support_avx512bf16_for_cpu = available and packable(layer)
    return available and any(packable(layer) for layer in layers)
