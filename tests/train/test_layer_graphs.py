"""The CPU-checkable parts of the CUDA-graph path: how a real decoder layer's call is split into a
graph key and the tensors copied per replay, rebinding that call to other buffers, the gradient
buffers the graphs add into, and the padding that makes batch shapes repeat. Capture and replay need a
GPU: benchmarks/train_throughput.py compares graphed and eager runs there (losses and gradients)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, MistralConfig

from forumtune.batching import collate
from forumtune.config import Config
from forumtune.train.layer_graphs import LayerGraphs
from forumtune.train.loading import layer_graphs_for
from forumtune.train.precision import enable_checkpointing

SHAPE = {
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}
CPU = torch.device("cpu")


def recorded_layer_calls(model, input_ids, **kwargs) -> list[tuple]:
    """(layer, run, hidden) of every checkpointed layer call of one training forward."""
    calls = []
    for layer in model.model.layers:

        def record(run, hidden, *extra, layer=layer, **_):
            calls.append((layer, run, hidden))
            return run(hidden, *extra)

        layer._gradient_checkpointing_func = record
    model.train()
    model(input_ids=input_ids, **kwargs)
    return calls


def tiny_model():
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(MistralConfig(**SHAPE))
    enable_checkpointing(model)
    return model


def test_a_layer_call_splits_into_the_same_key_every_step_and_rebinds_to_static_buffers():
    model, graphs, autocast = tiny_model(), LayerGraphs(CPU), (False, torch.bfloat16)
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(1))
    first = recorded_layer_calls(model, ids, num_items_in_batch=30.0)
    second = recorded_layer_calls(
        model, (ids + 1) % 128, num_items_in_batch=31.0
    )  # other tokens, another loss normaliser
    splits = [
        [graphs._split(layer, run, hidden, (), autocast) for layer, run, hidden in calls]
        for calls in (first, second)
    ]

    assert all(split is not None for step in splits for split in step)
    assert [s.key for s in splits[0]] == [s.key for s in splits[1]]
    assert splits[0][0].key != splits[0][1].key  # one graph per layer ...
    assert splits[0][0].signature == splits[0][1].signature  # ... sharing one set of static buffers
    assert (
        all(torch.is_tensor(t) for t in splits[0][0].tensors) and splits[0][0].tensors
    )  # rotary cos/sin at least

    longer = recorded_layer_calls(model, torch.randint(0, 128, (2, 24)))
    assert graphs._split(*longer[0], (), autocast).signature != splits[0][0].signature

    _, run, hidden = first[0]
    call = splits[0][0]
    statics = [t.clone() for t in call.tensors]  # other buffers holding the same values
    with torch.no_grad():
        expected = run(hidden)
        rebound = call.rebuild(statics)(hidden.clone())
    assert torch.equal(rebound, expected)
    with torch.no_grad():
        for static in statics:
            if static.is_floating_point():
                static.add_(
                    0.5
                )  # the rebound call reads the buffers it was given (rotary cos/sin), not the originals
        assert not torch.equal(call.rebuild(statics)(hidden.clone()), expected)


def test_calls_with_arguments_of_unknown_state_are_not_split():
    model, graphs = tiny_model(), LayerGraphs(CPU)
    layer, run, hidden = recorded_layer_calls(model, torch.randint(0, 128, (1, 8)))[0]
    run.keywords["unknown_state"] = object()  # e.g. a cache object: nothing says replaying it is safe
    assert graphs._split(layer, run, hidden, (), (False, torch.bfloat16)) is None
    with torch.no_grad():  # on the CPU a layer always runs eagerly
        assert torch.equal(graphs.forward(layer, run, hidden, (), (False, torch.bfloat16)), run(hidden))
    assert graphs.captured == 0


def test_gradient_buffers_stay_put_whatever_the_optimizer_does_with_grad():
    graphs = LayerGraphs(CPU)
    first, second = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    first.grad = torch.full((3,), 2.0)
    graphs.bind_gradient_buffers([first, second])
    buffers = first.grad, second.grad
    assert torch.equal(buffers[0], torch.full((3,), 2.0)) and torch.equal(buffers[1], torch.zeros(2))

    buffers[1].add_(5.0)
    first.grad, second.grad = (
        None,
        torch.full((2,), 7.0),
    )  # zero_grad(set_to_none=True); a grad set from outside
    graphs.bind_gradient_buffers([first, second])
    assert first.grad is buffers[0] and torch.equal(first.grad, torch.zeros(3))
    assert second.grad is buffers[1] and torch.equal(second.grad, torch.full((2,), 7.0))


def test_static_buffers_copy_a_source_again_only_when_it_changed():
    from forumtune.train.layer_graphs import _dead_ref, _Statics

    source = torch.arange(4.0)
    statics = _Statics(hidden=torch.zeros(2), tensors=[torch.zeros(4)], sources=[(_dead_ref, -1)])
    statics.load(torch.ones(2), [source])
    assert torch.equal(statics.tensors[0], source) and torch.equal(statics.hidden, torch.ones(2))
    statics.tensors[0].zero_()  # not copied again for the same, unchanged tensor (the next layer's call)
    statics.load(torch.ones(2), [source])
    assert torch.equal(statics.tensors[0], torch.zeros(4))
    source.add_(1.0)  # changed in place: copied again
    statics.load(torch.ones(2), [source])
    assert torch.equal(statics.tensors[0], source)


def test_batches_pad_to_a_multiple_so_shapes_repeat():
    records = [{"input_ids": [5] * 70, "labels": [5] * 70}, {"input_ids": [6] * 3, "labels": [6] * 3}]
    batch = collate(records, pad_id=0, device=CPU, pad_to_multiple=64)
    assert batch["input_ids"].shape == (2, 128)
    assert int(batch["attention_mask"].sum()) == 73 and int((batch["labels"] != -100).sum()) == 73
    packed = [{**r, "position_ids": list(range(len(r["input_ids"])))} for r in records]
    assert collate(packed, pad_id=0, device=CPU, pad_to_multiple=64)["input_ids"].shape == (2, 128)
    assert collate(records, pad_id=0, device=CPU)["input_ids"].shape == (2, 70)


def test_graphs_are_only_used_on_one_gpu_on_the_fast_path(tmp_path):
    raw = {"name": "g", "scrape": {"url": "http://127.0.0.1/x"}, "model": {"base": str(tmp_path)}}
    config = Config.model_validate(raw)
    assert config.train.cuda_graphs
    assert layer_graphs_for(config, CPU, distributed=False) is None  # the fast path is GPU-only
    if torch.cuda.is_available():
        cuda = torch.device("cuda", 0)
        assert layer_graphs_for(config, cuda, distributed=False) is not None
        assert layer_graphs_for(config, cuda, distributed=True) is None


def test_shapes_share_the_layer_buffers_up_to_the_longest_micro_batch():
    graphs = LayerGraphs(CPU, max_tokens=2 * 128)
    short_in, short_out = graphs._layer_buffers(torch.zeros(2, 64, 8))
    long_in, long_out = graphs._layer_buffers(torch.zeros(2, 128, 8))
    assert short_in.shape == (2, 64, 8) and long_out.shape == (2, 128, 8)
    assert short_in.data_ptr() == long_in.data_ptr() and short_out.data_ptr() == long_out.data_ptr()
    assert short_in.data_ptr() != short_out.data_ptr()
    beyond_in, _ = graphs._layer_buffers(torch.zeros(3, 128, 8))  # more than planned: buffers of its own
    assert beyond_in.shape == (3, 128, 8) and beyond_in.data_ptr() != long_in.data_ptr()
