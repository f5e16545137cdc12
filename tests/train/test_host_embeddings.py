"""train.embeddings_on_host: the input embedding table in host memory gives the same losses and LoRA
gradients as the table on the device, on tiny models of real architectures (4-bit base, fused LoRA,
offloaded checkpoints); auto picks it where it saves GPU memory; the planner moves the table off the card.

Without a GPU the "device" is the CPU itself: the host gather and the copy to the device still run."""

from __future__ import annotations

import csv
import gc

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, MistralConfig

from forumtune.config import load_config
from forumtune.errors import ConfigError, TrainError
from forumtune.kernels import lora_linear
from forumtune.train import host_embeddings
from forumtune.train.host_embeddings import keep_on_host, move_if_wanted, wanted, why_not
from forumtune.train.layer_checkpointing import use_layer_checkpointing
from forumtune.train.loading import load_for_training
from forumtune.train.loop import run_train
from forumtune.train.plan import load_shape, plan_memory, static_parts
from forumtune.train.precision import prepare_for_qlora
from tests.conftest import SMOKE_CONFIG
from tests.kernels.test_kernels import ARCHITECTURES, batch, load, lora, loss_and_lora_grads
from tests.train.test_preference_training import preference_config

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # only named: the decisions below read the device type and never touch a GPU
CONSOLE = Console(quiet=True)
UNTIED = sorted(name for name in ARCHITECTURES if name != "gemma2")  # Gemma-2's head is its embedding


@pytest.fixture(scope="module", params=UNTIED)
def model_dir(request, tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(request.param)
    AutoModelForCausalLM.from_config(ARCHITECTURES[request.param]()).save_pretrained(path)
    return str(path)


def fast_model(model_dir: str):
    """The fast path's model as the CPU can run it: 4-bit base in its dtype, fused LoRA, offloaded checkpoints."""
    model = lora(prepare_for_qlora(load(model_dir, quantized=True), gradient_checkpointing=True))
    use_layer_checkpointing(model, offload=True)
    lora_linear.use_fused_lora(model)
    return model


def test_the_host_table_gives_the_same_loss_and_every_lora_gradient(model_dir):
    reference_loss, reference_grads = loss_and_lora_grads(fast_model(model_dir))
    model = fast_model(model_dir)
    host = keep_on_host(model, CPU)
    table = model.get_input_embeddings().weight
    assert table.device == CPU and host.table is table and not table.requires_grad
    assert host_embeddings.installed(model) is host
    rows = host.gather(batch()["input_ids"])
    assert rows.is_pinned() == torch.cuda.is_available()  # pinned where there is a GPU to copy to
    # the checkpointed layers need no input that requires gradients: the rows stay out of the graph
    assert not model.get_input_embeddings()(batch()["input_ids"]).requires_grad
    with torch.no_grad():
        assert torch.equal(model(**batch()).logits, fast_model(model_dir)(**batch()).logits)
    loss, grads = loss_and_lora_grads(model)
    assert loss == reference_loss
    assert grads.keys() == reference_grads.keys() and len(grads) == 7 * 2 * model.config.num_hidden_layers
    for name, grad in grads.items():
        assert torch.equal(grad, reference_grads[name]), name


def test_a_prepared_batch_reads_the_rows_gathered_when_it_was_prepared(tmp_path):
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(ARCHITECTURES["mistral"]()).save_pretrained(tmp_path)
    model = fast_model(str(tmp_path))
    host = keep_on_host(model, CPU)
    embedding = model.get_input_embeddings()
    prepared, other = batch(), batch()["input_ids"].flip(0)
    before = embedding(prepared["input_ids"]).clone()
    kl_ids = prepared["input_ids"][:, :8].clone()
    host.stage({**prepared, "kl": {"input_ids": kl_ids}}, {**prepared, "kl": {"input_ids": kl_ids}})
    assert len(host._staged) == 2  # the batch's ids and its nested KL rows' (KTO)
    with torch.no_grad():
        host.table.zero_()  # a gather now would read zeros
    assert torch.equal(embedding(prepared["input_ids"]), before)
    assert torch.equal(
        embedding(prepared["input_ids"]), before
    )  # again: DPO's reference pass, then the policy
    assert torch.equal(embedding(kl_ids), before[:, :8])
    assert not embedding(other).any()  # not prepared: gathered at the forward
    del prepared, kl_ids
    gc.collect()
    assert host._staged == {}  # the rows go with the batch
    assert host.waits == 0  # every id was on the host: nothing waited for a device


def test_auto_is_on_for_gpu_training_on_the_fast_path_in_one_process():
    assert wanted("auto", device=CUDA, fast_path=True, distributed=False)
    assert not wanted(
        "auto", device=CPU, fast_path=False, distributed=False
    )  # the table is in host memory already
    assert not wanted("auto", device=CUDA, fast_path=False, distributed=False)
    assert not wanted("auto", device=CUDA, fast_path=True, distributed=True)  # DDP, FSDP: auto leaves it
    assert wanted(True, device=CPU, fast_path=False, distributed=False)
    assert not wanted(False, device=CUDA, fast_path=True, distributed=False)


@pytest.mark.parametrize("name", ["mistral", "gemma2"])
def test_auto_moves_an_untied_table_and_leaves_a_tied_one(name, tmp_path):
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(ARCHITECTURES[name]()).save_pretrained(tmp_path)
    model = fast_model(str(tmp_path))
    moved = move_if_wanted(model, "auto", device=CUDA, fast_path=True, distributed=False)
    if name == "gemma2":
        assert moved is None and "tied" in why_not(model)
        head = model.get_output_embeddings()
        assert head.weight is model.get_input_embeddings().weight and head.weight.device == CPU
        with pytest.raises(TrainError, match="train.embeddings_on_host is true.*tied"):
            move_if_wanted(model, True, device=CUDA, fast_path=True, distributed=False)
    else:
        assert moved is not None and moved.device == CUDA and moved.table.device == CPU
    assert (
        move_if_wanted(fast_model(str(tmp_path)), "auto", device=CPU, fast_path=False, distributed=False)
        is None
    )


def test_true_says_why_under_torchrun_and_with_a_trained_embedding(tiny_mistral):
    config = load_config(SMOKE_CONFIG, [f"model.base={tiny_mistral}", "train.embeddings_on_host=true"])
    model = load_for_training(config, CPU)
    with pytest.raises(TrainError, match="torchrun"):
        move_if_wanted(model, True, device=CUDA, fast_path=True, distributed=True)
    trained = load_config(
        SMOKE_CONFIG,
        [
            f"model.base={tiny_mistral}",
            "train.embeddings_on_host=true",
            "lora.modules_to_save=[embed_tokens]",
        ],
    )
    with pytest.raises(TrainError, match="train.embeddings_on_host is true.*modules_to_save"):
        load_for_training(trained, CPU)


def test_load_for_training_moves_the_table_when_asked(tiny_mistral):
    forced = load_for_training(
        load_config(SMOKE_CONFIG, [f"model.base={tiny_mistral}", "train.embeddings_on_host=true"]), CPU
    )
    assert host_embeddings.installed(forced) is not None
    assert forced.get_input_embeddings().weight.device == CPU
    auto = load_for_training(load_config(SMOKE_CONFIG, [f"model.base={tiny_mistral}"]), CPU)
    assert host_embeddings.installed(auto) is None  # auto: CPU training keeps the model as it is


def test_the_setting_is_validated_at_the_edge():
    assert load_config(SMOKE_CONFIG).train.embeddings_on_host == "auto"
    for text, value in (("true", True), ("on", True), ("false", False), ("off", False), ("auto", "auto")):
        assert (
            load_config(SMOKE_CONFIG, [f"train.embeddings_on_host={text}"]).train.embeddings_on_host == value
        )
    with pytest.raises(ConfigError, match="train.embeddings_on_host"):
        load_config(SMOKE_CONFIG, ["train.embeddings_on_host=sometimes"])


def metrics(run_dir) -> list[tuple[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return [(row["split"], row["loss"]) for row in csv.DictReader(handle)]


def test_training_with_the_host_table_logs_the_same_losses_and_saves_the_same_adapter(train_config):
    """prepare_step's staged rows, the eval loss (collated on the device), checkpoints and adapter/."""
    runs = {}
    for setting in (True, False):
        config = train_config.model_copy(deep=True)
        config.train.max_steps, config.train.eval_every, config.train.save_every = 4, 2, 2
        config.train.embeddings_on_host = setting
        run_dir = train_config.run_dir.parent / f"host-{setting}"
        run_train(config, train_config.run_dir / "dataset", run_dir, CONSOLE)
        runs[setting] = run_dir
    assert metrics(runs[True]) == metrics(runs[False]) and len(metrics(runs[True])) == 6
    files = {setting: sorted(p.name for p in (run / "adapter").iterdir()) for setting, run in runs.items()}
    assert files[True] == files[False]
    weights = {
        setting: load_file(run / "adapter" / "adapter_model.safetensors") for setting, run in runs.items()
    }
    assert weights[True].keys() == weights[False].keys()
    assert all(torch.equal(weights[True][name], weights[False][name]) for name in weights[True])


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_preference_methods_train_the_same_with_the_host_table(
    tmp_path, tiny_tokenizer, tiny_mistral, method
):
    """The reference pass reads the staged rows a second time; KTO's KL rows are a nested batch."""
    curves = []
    for setting in (True, False):
        config = preference_config(
            tmp_path / str(setting), tiny_tokenizer, tiny_mistral, method=method, max_steps=3, eval_every=3
        )
        config.train.embeddings_on_host = setting
        run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE)
        curves.append(metrics(config.run_dir))
    assert curves[0] == curves[1] and len(curves[0]) == 4


@pytest.fixture(scope="module")
def shape_dirs(mistral_7b_dir, tmp_path_factory):
    """config.json of the Mistral-7B shape, untied (as it is) and tied."""
    tied = MistralConfig.from_pretrained(mistral_7b_dir)
    tied.tie_word_embeddings = True
    path = tmp_path_factory.mktemp("mistral-7b-tied")
    tied.save_pretrained(path)
    return {False: mistral_7b_dir, True: path}


def planned(model_dir, *overrides):
    config = load_config(
        SMOKE_CONFIG,
        [f"model.base={model_dir}", "model.compute_dtype=bfloat16", "lora.modules_to_save=null", *overrides],
    )
    return config, plan_memory(config, vram_gib=8)


def test_the_planner_counts_the_host_table_off_the_card(shape_dirs):
    table = 32000 * 4096 * 2  # vocab × hidden × bf16
    on_card_config, on_card = planned(shape_dirs[False], "train.embeddings_on_host=false")
    on_host_config, on_host = planned(shape_dirs[False])  # auto, on the fast path
    name = "embeddings, head, norms"
    assert on_card.parts[name] - on_host.parts[name] == table
    assert on_card.total - on_host.total == pytest.approx(table, rel=1e-9)
    assert (
        on_host.host_parts == {"input embedding (train.embeddings_on_host)": table} and not on_card.host_parts
    )
    shape = load_shape(on_card_config)
    static_drop = sum(static_parts(on_card_config, shape).values()) - sum(
        static_parts(on_host_config, shape).values()
    )
    assert static_drop == table
    _, tied = planned(shape_dirs[True])
    _, tied_on_card = planned(shape_dirs[True], "train.embeddings_on_host=false")
    assert tied.parts == tied_on_card.parts and not tied.host_parts  # the head reads that table
    _, plain = planned(shape_dirs[False], "train.fast_path=false")
    assert not plain.host_parts  # auto: the fast path only
    _, trained = planned(shape_dirs[False], "lora.modules_to_save=[embed_tokens]")
    assert not trained.host_parts


def test_plan_cli_shows_the_table_as_host_memory(shape_dirs):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "forumtune.cli", "plan", str(SMOKE_CONFIG), "--vram", "8"]
        + ["--set", f"model.base={shape_dirs[False]}", "--set", "model.compute_dtype=bfloat16"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "host memory: input embedding (train.embeddings_on_host)" in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the card's memory needs a GPU")
def test_on_a_gpu_the_table_leaves_the_card_and_a_prepared_step_never_waits(tiny_mistral):
    from forumtune.batching import to_device
    from forumtune.train.precision import training_autocast

    cuda = torch.device("cuda")
    ids = torch.randint(3, 200, (2, 64), generator=torch.Generator().manual_seed(1))
    host_batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}

    def step(setting: str) -> tuple[int, float, dict[str, torch.Tensor], object]:
        config = load_config(
            SMOKE_CONFIG,
            [f"model.base={tiny_mistral}", "model.compute_dtype=bfloat16", "lora.modules_to_save=null"]
            + ["lora.dropout=0", f"train.embeddings_on_host={setting}"],
        )
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated(cuda)
        torch.manual_seed(7)
        model = load_for_training(config, cuda)
        held = torch.cuda.memory_allocated(cuda) - before
        host = host_embeddings.installed(model)
        device_batch = to_device(host_batch, cuda)
        if host is not None:
            host.stage(host_batch, device_batch)
        with training_autocast(cuda, torch.bfloat16):
            loss = model(**device_batch).loss
        loss.backward()
        grads = {n: p.grad.float().cpu() for n, p in model.named_parameters() if p.grad is not None}
        return held, float(loss), grads, host

    card_held, card_loss, card_grads, none = step("false")
    host_held, host_loss, host_grads, host = step("auto")
    assert none is None and host is not None and host.table.device == CPU
    table_bytes = host.table.numel() * host.table.element_size()
    assert card_held - host_held == pytest.approx(
        table_bytes, abs=4096
    )  # the allocator rounds to 512-byte blocks
    assert host.waits == 0  # the rows were staged: no copy of the ids back from the GPU
    assert host_loss == pytest.approx(card_loss, rel=1e-6)
    assert host_grads.keys() == card_grads.keys() and host_grads
    for name, grad in host_grads.items():  # the same rows in; only atomics in attention's backward may differ
        assert torch.allclose(grad, card_grads[name], rtol=1e-3, atol=1e-6), name
