"""Train the built-in tiny model's tokenizer on the bundled demo forum (run again if the forum changes).

    python scripts/make_tiny_tokenizer.py                 rewrite src/forumtune/assets/tiny-llama/
    python scripts/make_tiny_tokenizer.py --out DIR       write it elsewhere (to compare, say)

Writes a byte-level BPE tokenizer with the Mistral [INST] chat template. Deterministic: the same forum
gives the same files. The tiny model's weights are made from these files on first use: after a rewrite,
bump TINY_MODEL_VERSION in base_model.py so cached copies are rebuilt.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from forumtune.chat_templates import NAMED_TEMPLATES
from forumtune.cleaning import clean_post
from forumtune.scrape.sites import builtin_profiles

ROOT = Path(__file__).resolve().parent.parent
FORUM = ROOT / "examples" / "demo_forum"
TARGET = ROOT / "src" / "forumtune" / "assets" / "tiny-llama"
VOCAB_SIZE = 2048
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]"]


def forum_texts() -> list[str]:
    profile = builtin_profiles()["demo"]  # the site profile examples/demo.yaml scrapes the forum with
    texts = []
    for page in sorted(FORUM.glob("threads/*/*.html")):
        parsed = profile.parse_thread_page(page.read_text(encoding="utf-8"), "http://127.0.0.1/")
        texts += [parsed.title or ""] + [clean_post(p.text, signature=p.signature) for p in parsed.posts]
    return [t for t in texts if t]


def train_tokenizer(texts: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=TARGET, help="where the tokenizer files go")
    out = parser.parse_args().out
    texts = forum_texts()
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(texts),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["[INST]", "[/INST]"],
        model_max_length=1024,
        chat_template=NAMED_TEMPLATES["mistral"],
        clean_up_tokenization_spaces=False,
    )
    with tempfile.TemporaryDirectory() as staging:
        wrapped.save_pretrained(staging)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(staging, out)
    print(
        f"trained on {len(texts)} texts; vocab {len(wrapped)}; wrote {sorted(p.name for p in out.iterdir())} "
        f"to {out}"
    )


if __name__ == "__main__":
    main()
