"""Compute kernels for QLoRA training on a GPU. Each one has a plain reference it is tested against:

- `lora_linear.use_fused_lora`: each LoRA projection on a 4-bit base as one autograd function (the base
  matmul adds to the LoRA product in its epilogue, no clone/scale/add kernels; the recompute skips the
  down projection nobody reads). Reference: peft's `lora.Linear4bit`.
- `liger.apply_liger_kernels`: liger-kernel's fused RMSNorm, RoPE, SwiGLU and linear+cross-entropy
  (no full-vocabulary logits). Reference: the transformers modules they replace.
- `answer_log_probs.chunked_answer_log_probs`: the preference losses' answer-token log-probs from the last
  hidden states through the output head, a chunk of tokens at a time, recomputed in the backward (no
  full-vocabulary logits). Reference: `preference_batches.full_logit_log_probs`, the model's own logits.
- `nf4_dequant.dequantize_nf4`: a double-quantized NF4 weight to bf16 in one Triton kernel, bit-identical
  to bitsandbytes' two and 1.48x faster per layer (`train.dequantize_kernel`, "triton" by default,
  "bitsandbytes" to switch back). Reference: `bitsandbytes.functional.dequantize_4bit`.
- `fp8_matmul`: the base's matmuls in FP8 (`train.base_matmul: fp8`, opt-in): NF4 straight to e4m3 with a
  scale per weight row in one Triton kernel, activations and gradients to e4m3 with a scale per row,
  `torch._scaled_mm`. References: its torch versions (bit for bit) and the bf16 path (within fp8 rounding).

The rest of the fast path is how training runs rather than what it computes, and lives in train/:
`precision` (bf16 activations instead of peft's fp32 upcast), `layer_checkpointing` (checkpointed layers,
inputs kept on the GPU or offloaded), `layer_graphs` (CUDA graphs) and `allocator` (expandable segments).
docs/ARCHITECTURE.md shows how train/loading.py wires them together. Which of bitsandbytes' two CPU layouts
a 4-bit weight is in (trainable, or packed for generation) is decided in forumtune/cpu_layout.py.
"""

from forumtune.kernels import answer_log_probs, fp8_matmul, liger, lora_linear, nf4_dequant

__all__ = ["answer_log_probs", "fp8_matmul", "liger", "lora_linear", "nf4_dequant"]
