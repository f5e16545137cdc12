"""Fast paths for QLoRA training on a GPU. Each one has a plain reference it is tested against:

- `precision.prepare_for_qlora`: keeps the residual stream in the compute dtype (bf16) instead of
  peft's fp32 upcast of norms, embeddings and lm_head, so attention takes the flash/efficient SDPA
  kernels and elementwise traffic halves. Reference: `peft.prepare_model_for_kbit_training`.
- `offload.OffloadedCheckpoint`: gradient checkpointing that parks each decoder layer's input in
  pinned CPU memory instead of on the GPU. Reference: `torch.utils.checkpoint.checkpoint`.
- `lora_linear.use_fused_lora`: each LoRA projection on a 4-bit base as one autograd function (the LoRA
  update in the matmul's epilogue, no clone/scale/add kernels). Reference: peft's `lora.Linear4bit`.
- `liger.apply_liger_kernels`: liger-kernel's fused RMSNorm, RoPE, SwiGLU and linear+cross-entropy
  (no full-vocabulary logits). Reference: the transformers modules they replace.
"""

from forumtune.kernels import liger, lora_linear, offload, precision

__all__ = ["liger", "lora_linear", "offload", "precision"]
