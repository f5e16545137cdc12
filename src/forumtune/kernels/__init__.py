"""Fast paths for QLoRA training on a GPU, and one for generating on a CPU. Each one has a plain reference
it is tested against:

- `precision.prepare_for_qlora`: keeps the residual stream in the compute dtype (bf16) instead of
  peft's fp32 upcast of norms, embeddings and lm_head, so attention takes the flash/efficient SDPA
  kernels and elementwise traffic halves. Reference: `peft.prepare_model_for_kbit_training`.
- `offload.OffloadedCheckpoint`: gradient checkpointing that keeps each decoder layer's input on the GPU
  or parks it in pinned CPU memory. Reference: `torch.utils.checkpoint.checkpoint`.
- `layer_graphs.LayerGraphs`: each checkpointed layer's forward and recompute + backward replayed as CUDA
  graphs once a batch shape repeats. Reference: the same layer run kernel by kernel (`cuda_graphs: false`).
- `lora_linear.use_fused_lora`: each LoRA projection on a 4-bit base as one autograd function (the base
  matmul adds to the LoRA product in its epilogue, no clone/scale/add kernels; the recompute skips the
  down projection nobody reads). Reference: peft's `lora.Linear4bit`.
- `liger.apply_liger_kernels`: liger-kernel's fused RMSNorm, RoPE, SwiGLU and linear+cross-entropy
  (no full-vocabulary logits). Reference: the transformers modules they replace.
- `nf4_dequant.dequantize_nf4`: a double-quantized NF4 weight to bf16 in one Triton kernel, bit-identical
  to bitsandbytes' two and 1.48x faster per layer (`lora_linear.DEQUANTIZE_KERNEL`, "triton" by default,
  "bitsandbytes" to switch back). Reference: `bitsandbytes.functional.dequantize_4bit`.
- `cpu_layout.use_packed_layout_for_generation`: bitsandbytes' packed CPU layout for 4-bit weights (AVX512-BF16
  kernels, bf16 products), for generation only; training and losses keep the trainable layout
  (`cpu_layout.use_trainable_layout`). Reference: the trainable layout.
- `allocator.use_expandable_segments`: PyTorch's CUDA allocator with expandable segments, so freed memory
  does not stay reserved in fragments. Reference: the allocator's default fixed segments.
"""

from forumtune.kernels import (
    allocator,
    cpu_layout,
    layer_graphs,
    liger,
    lora_linear,
    nf4_dequant,
    offload,
    precision,
)

__all__ = ["allocator", "cpu_layout", "layer_graphs", "liger", "lora_linear", "nf4_dequant", "offload", "precision"]
