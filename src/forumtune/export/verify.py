"""`export --verify`: read the GGUF back and check it says what the merged transformers model says.

Always: the structure (architecture, every tensor with its shape, the vocabulary, the chat template),
read with gguf.GGUFReader. With llama-cpp-python installed: llama.cpp's token ids and logits on a few
prompts against transformers', and the greedy continuation of each.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from forumtune.export import llama_runtime
from forumtune.export.checkpoint import open_tensors
from forumtune.export.errors import ExportError
from forumtune.export.gguf_tensors import gguf_tensor_name

VERIFY_QUESTIONS = [
    "My bike chain squeaks after riding in the rain. What oil should I use?",
    "Is it worth converting to tubeless tyres for winter commuting?",
]
# Below this share of positions whose top token agrees, a full-precision GGUF does not compute the model.
MIN_TOP1_AGREEMENT = {"f32": 0.99, "f16": 0.95, "bf16": 0.9}
GREEDY_TOKENS = 12


@dataclass
class PromptCheck:
    prompt: str
    same_token_ids: bool
    max_logit_diff: float
    top1_agreement: float
    greedy_matches: bool


@dataclass
class VerifyReport:
    gguf_path: Path
    tensors: int
    structure_problems: list[str] = field(default_factory=list)
    prompts: list[PromptCheck] = field(default_factory=list)
    llama_cpp_ran: bool = False


def verify_gguf(
    gguf_path: Path, model_dir: Path, out_type: str, lora_path: Path | None = None
) -> VerifyReport:
    """Compare `gguf_path` (with `lora_path` applied, for an adapter GGUF) with the model in `model_dir`.

    Raises ExportError listing what differs; returns the figures when everything agrees.
    """
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    reader = GGUFReader(gguf_path)
    report = VerifyReport(gguf_path, len(reader.tensors))
    if lora_path is None:
        report.structure_problems = structure_problems(reader, model_dir, tokenizer)
    if llama_runtime.llama_cpp_available():
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto").eval()
        report.prompts = compare_with_llama_cpp(gguf_path, lora_path, model, tokenizer)
        report.llama_cpp_ran = True
    if problems := report_problems(report, out_type):
        raise ExportError(f"{gguf_path} failed verification against {model_dir}:\n  " + "\n  ".join(problems))
    return report


def structure_problems(reader: GGUFReader, model_dir: Path, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    problems = []
    stored = {tensor.name: tuple(int(dim) for dim in reversed(tensor.shape)) for tensor in reader.tensors}
    with ExitStack() as open_files:
        for hf_name, handle in open_tensors(model_dir, open_files).items():
            name = gguf_tensor_name(hf_name, model_dir)
            shape = tuple(handle.get_slice(hf_name).get_shape())
            if name not in stored and not (name == "output.weight" and "token_embd.weight" in stored):
                problems.append(f"tensor {name} ({hf_name}) is missing")
            elif name in stored and stored[name] != shape:
                problems.append(f"tensor {name} is {stored[name]}, the model has {shape}")
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    if tokens[: len(tokenizer)] != tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))):
        problems.append("the vocabulary differs from the tokenizer's")
    template = reader.fields.get("tokenizer.chat_template")
    if tokenizer.chat_template and (template is None or template.contents() != tokenizer.chat_template):
        problems.append("the chat template is missing or differs")
    return problems


def verify_prompts(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    prompts = [VERIFY_QUESTIONS[0]]
    if tokenizer.chat_template:
        for question in VERIFY_QUESTIONS:
            messages = [{"role": "user", "content": question}]
            prompts.append(
                tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
    return prompts


def compare_with_llama_cpp(
    gguf_path: Path, lora_path: Path | None, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> list[PromptCheck]:
    checks = []
    with llama_runtime.loaded_gguf(gguf_path, lora_path=lora_path) as llama:
        tokenizer_adds_bos = tokenizer("x").input_ids[:1] == [tokenizer.bos_token_id]
        for prompt in verify_prompts(tokenizer):
            add_special = not prompt_has_bos(prompt, tokenizer)
            hf_ids = tokenizer(prompt, add_special_tokens=add_special).input_ids
            llama_ids = llama_runtime.tokenize(llama, prompt, add_bos=add_special and tokenizer_adds_bos)
            llama_logits = llama_runtime.logits_for(llama, hf_ids)
            hf_logits = transformers_logits(model, hf_ids)
            greedy = llama_runtime.greedy_continuation(llama, hf_ids, GREEDY_TOKENS)
            checks.append(
                PromptCheck(
                    prompt=prompt,
                    same_token_ids=llama_ids == hf_ids,
                    max_logit_diff=float(np.abs(llama_logits - hf_logits).max()),
                    top1_agreement=float((llama_logits.argmax(-1) == hf_logits.argmax(-1)).mean()),
                    greedy_matches=greedy == transformers_greedy(model, hf_ids, GREEDY_TOKENS),
                )
            )
    return checks


def prompt_has_bos(prompt: str, tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(tokenizer.bos_token) and prompt.startswith(tokenizer.bos_token)


def transformers_logits(model: PreTrainedModel, token_ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([token_ids])).logits[0].float().numpy()


def transformers_greedy(model: PreTrainedModel, token_ids: list[int], max_new_tokens: int) -> list[int]:
    """Argmax decoding that, like llama_runtime.greedy_continuation, does not stop at end-of-sequence."""
    generated: list[int] = []
    inputs, past = torch.tensor([token_ids]), None
    with torch.no_grad():
        for _ in range(max_new_tokens):
            output = model(input_ids=inputs, past_key_values=past, use_cache=True)
            past = output.past_key_values
            generated.append(int(output.logits[0, -1].argmax()))
            inputs = torch.tensor([[generated[-1]]])
    return generated


def report_problems(report: VerifyReport, out_type: str) -> list[str]:
    problems = list(report.structure_problems)
    minimum = MIN_TOP1_AGREEMENT.get(out_type)
    for check in report.prompts:
        short = check.prompt[:40].replace("\n", " ")
        if not check.same_token_ids:
            problems.append(f"llama.cpp tokenizes {short!r}… differently from the Hugging Face tokenizer")
        if minimum is not None and check.top1_agreement < minimum:
            problems.append(
                f"on {short!r}… llama.cpp's top token agrees with transformers' at only "
                f"{check.top1_agreement:.0%} of positions (max |Δlogit| {check.max_logit_diff:.3f})"
            )
    return problems
