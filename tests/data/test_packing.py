"""Packed rows train exactly like the same examples unpacked: a tiny random Llama, real attention masks."""

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from forumtune.batching import collate, input_token_count, to_device
from forumtune.data.packing import pack_bins, pack_records
from forumtune.records import IGNORE_INDEX

PAD = 0


@pytest.fixture(autouse=True)
def one_thread():
    """A model this small runs fastest on one thread; two wait on each other when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_best_fit_packs_tightly_and_never_overflows():
    lengths = [300, 200, 120, 90, 80, 60, 40, 30, 500, 12]
    bins = pack_bins(lengths, 512)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    assert len(bins) == 3  # 1432 tokens: the fewest 512-token rows that can hold them


def random_records(count: int, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    records = []
    for index in range(count):
        length = int(torch.randint(12, 40, (1,), generator=generator))
        ids = torch.randint(3, 200, (length,), generator=generator).tolist()
        prompt = length // 2
        records.append(
            {"thread_id": index, "input_ids": [1, *ids[1:]], "labels": [IGNORE_INDEX] * prompt + ids[prompt:]}
        )
    return records


def tiny_llama(attention: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=200,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        attn_implementation=attention,
    )
    return LlamaForCausalLM(config).to(torch.float64)


@torch.no_grad()
def per_example_losses(model, records: list[dict]) -> list[float]:
    """Mean loss of each example over its trained tokens, each example alone in its batch."""
    losses = []
    for record in records:
        batch = collate([record], PAD, torch.device("cpu"))
        losses.append(float(model(**batch).loss))
    return losses


@torch.no_grad()
def packed_per_example_losses(model, rows: list[dict]) -> dict[int, float]:
    """Per-example loss read out of packed rows: the token losses of each example's span, averaged."""
    losses = {}
    batch = collate(rows, PAD, torch.device("cpu"))
    logits = model(**batch).logits
    token_loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
    )
    for row_index, row in enumerate(rows):
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
        for thread, start, end in zip(row["thread_ids"], starts, starts[1:]):
            labels = batch["labels"][row_index, start + 1 : end]
            losses[thread] = float(token_loss[row_index, start : end - 1][labels != IGNORE_INDEX].mean())
    return losses


def train_steps(model, batches: list[dict], steps: int) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        for batch in batches:
            tokens = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            model(**batch, num_items_in_batch=tokens).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_and_unpacked_training_give_the_same_per_example_loss(attention):
    records = random_records(6, seed=3)
    rows = pack_records(records, max_seq_len=96, seed=0)
    assert len(rows) < len(records)
    model = tiny_llama(attention)
    before = per_example_losses(model, records)
    packed_before = packed_per_example_losses(model, rows)
    assert [packed_before[i] for i in range(len(records))] == pytest.approx(before, abs=1e-5)

    unpacked_model, packed_model = model, copy.deepcopy(model)
    train_steps(unpacked_model, [collate(records, PAD, torch.device("cpu"))], steps=2)
    train_steps(packed_model, [collate(rows, PAD, torch.device("cpu"))], steps=2)
    after = per_example_losses(unpacked_model, records)
    assert per_example_losses(packed_model, records) == pytest.approx(after, abs=1e-5)
    assert sum(after) < sum(before)  # it did train


def test_a_2d_attention_mask_would_leak_across_examples():
    """Why packed batches carry no attention_mask: with one, transformers ignores the position-id boundaries."""
    records = random_records(4, seed=5)
    rows = pack_records(records, max_seq_len=200, seed=0)
    model = tiny_llama("sdpa")
    batch = collate(rows, PAD, torch.device("cpu"))
    honest = model(**batch).logits
    leaky = model(**batch | {"attention_mask": torch.ones_like(batch["input_ids"])}).logits
    assert not torch.allclose(honest, leaky)


def test_a_packed_batch_goes_to_the_device_as_it_is():
    """The loop sends every batch through batching.to_device: a packed one carries use_cache=False beside
    its tensors (which once failed there), and KTO's batches nest their KL rows."""
    rows = pack_records(random_records(6, seed=3), 128, seed=0)
    batch = collate(rows, PAD, torch.device("cpu"))
    moved = to_device({**batch, "kl": dict(batch)}, torch.device("cpu"))
    assert moved["use_cache"] is False and moved["kl"]["use_cache"] is False
    assert torch.equal(moved["position_ids"], batch["position_ids"])
    assert input_token_count(moved, PAD) == 2 * sum(len(r["input_ids"]) for r in rows)
