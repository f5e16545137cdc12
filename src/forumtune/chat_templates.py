"""Chat templates by name, for base models whose tokenizer has none or a wrong one. One entry each.

Every template writes the model's BOS once at the start (when it has one, and it is not the family's
turn opener: SmolLM2's tokenizer names `<|im_start|>` its bos_token) and the tokenizer's EOS after every
answer: when a family ends a turn with its own marker (`<|eot_id|>`, `<|im_end|>`,
`<end_of_turn>`, `<|end|>`) and that marker is not the EOS, the EOS follows it, so the model learns
to stop whatever its generation config stops on. A system prompt goes where the family puts it.

A shared module, not part of the build stage: config.py checks build.chat_template against this table,
base_model.load_tokenizer installs the template on the tokenizer, and every stage renders through it.
"""

from __future__ import annotations

BOS = "{% if bos_token %}{{ bos_token }}{% endif %}"


def bos_unless(turn_opener: str) -> str:
    return f"{{% if bos_token and bos_token != '{turn_opener}' %}}{{{{ bos_token }}}}{{% endif %}}"


def eos_after(marker: str) -> str:
    return f"{{% if eos_token != '{marker}' %}}{{{{ eos_token }}}}{{% endif %}}"


MISTRAL = (
    BOS + "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ '[INST] ' }}{% if loop.index0 == 1 and messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] + '\n\n' }}{% endif %}{{ message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
)

# Mistral 7B Instruct v0.3 and later sentencepiece vocabularies: [INST] and [/INST] are control tokens and the
# text between them is encoded on its own (mistral-common's V3), so no space goes before [/INST].
MISTRAL_V3 = (
    BOS + "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ '[INST] ' }}{% if loop.index0 == 1 and messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] + '\n\n' }}{% endif %}{{ message['content'] + '[/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
)

LLAMA2 = (
    BOS + "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ '[INST] ' }}{% if loop.index0 == 1 and messages[0]['role'] == 'system' %}"
    "{{ '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' }}{% endif %}"
    "{{ message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)

LLAMA3 = (
    BOS + "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% if message['role'] == 'assistant' %}" + eos_after("<|eot_id|>") + "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

CHATML = (
    bos_unless("<|im_start|>") + "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' }}"
    "{% if message['role'] == 'assistant' %}" + eos_after("<|im_end|>") + "{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Gemma has no system role: the system prompt opens the first user turn, as Google's template does.
GEMMA = (
    BOS + "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ '<start_of_turn>user\n' }}{% if loop.index0 == 1 and messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] + '\n\n' }}{% endif %}{{ message['content'] + '<end_of_turn>\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '<start_of_turn>model\n' + message['content'] + '<end_of_turn>' }}"
    + eos_after("<end_of_turn>")
    + "{{ '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

PHI3 = (
    BOS + "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>' }}"
    "{% if message['role'] == 'assistant' %}" + eos_after("<|end|>") + "{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

NAMED_TEMPLATES: dict[str, str] = {
    "mistral": MISTRAL,
    "mistral_v3": MISTRAL_V3,
    "llama2": LLAMA2,
    "llama3": LLAMA3,
    "chatml": CHATML,
    "gemma": GEMMA,
    "phi3": PHI3,
}
