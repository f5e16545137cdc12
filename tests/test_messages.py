"""What the `forumtune` command says when something is wrong: run as a user runs it, in a subprocess.

Errors go to stderr with a non-zero exit and no traceback, text is printed as typed (never read as rich
markup), and each message names what is at fault and what to do.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from forumtune import __version__
from tests.conftest import DEMO_CONFIG, write_config

# The real command, with llama.cpp's bindings made unimportable where a test needs them absent.
WITHOUT_LLAMA_CPP = "import sys; sys.modules['llama_cpp'] = None; from forumtune.cli import main; main()"


def forumtune(
    *args: str, env: dict[str, str] | None = None, without_llama_cpp: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess:
    program = ["-c", WITHOUT_LLAMA_CPP, *args] if without_llama_cpp else ["-m", "forumtune.cli", *args]
    return subprocess.run(
        [sys.executable, *program],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def assert_user_error(result: subprocess.CompletedProcess, *phrases: str) -> None:
    """Non-zero exit; on stderr, after any progress, an `error:` holding every phrase; no traceback; and
    nothing of it on stdout."""
    assert result.returncode != 0, result.stdout
    assert "error:" not in result.stdout, "errors must not end up in the command's output"
    assert "\nerror: " in "\n" + result.stderr, result.stderr
    message = result.stderr[
        result.stderr.index("error: ")
        if result.stderr.startswith("error: ")
        else result.stderr.index("\nerror: ") + 1 :
    ]
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in message, (phrase, result.stderr)


def test_version():
    result = forumtune("--version")
    assert (result.returncode, result.stdout) == (0, f"forumtune {__version__}\n")


def test_errors_go_to_stderr_so_redirected_output_holds_only_results(tmp_path):
    result = forumtune("config", str(DEMO_CONFIG), "--set", "train.lr=0.1")
    assert_user_error(result, "train.lr: unknown key")
    assert result.returncode == 2
    good = forumtune("config", str(DEMO_CONFIG))
    assert good.returncode == 0 and good.stderr == "" and yaml.safe_load(good.stdout)["name"] == "demo"


@pytest.mark.parametrize(
    ("make", "phrases"),
    [
        (lambda tmp: tmp, ["is a directory, not a config file", "examples/demo.yaml"]),
        (lambda tmp: tmp / "missing.yaml", ["missing.yaml does not exist", "examples/demo.yaml"]),
        (
            lambda tmp: write_text(tmp / "bad.yaml", "name: demo\nscrape: [url: x\n"),
            ["bad.yaml: not valid YAML", "line"],
        ),
        (
            lambda tmp: write_bytes(tmp / "binary.yaml", b"\xff\xfe\x00name"),
            ["binary.yaml is not a text file"],
        ),
    ],
)
def test_a_config_path_that_is_not_a_yaml_file_is_one_clear_line(tmp_path, make, phrases):
    result = forumtune("config", str(make(tmp_path)))
    assert_user_error(result, *phrases)
    assert result.stdout == "" and result.stderr.count("\n") == 1


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_square_brackets_are_printed_as_typed_not_read_as_markup(tmp_path):
    result = forumtune("config", str(tmp_path / "[llama].yaml"))
    assert_user_error(result, "[llama].yaml does not exist")
    result = forumtune("config", str(DEMO_CONFIG), "--set", "build.system_prompt=[oops")
    assert_user_error(
        result,
        "--set 'build.system_prompt=[oops': the value is not valid YAML",
        """--set 'build.system_prompt="[oops"'""",
    )
    # advice naming an extra, from a stage: the k-quant needs llama.cpp, which is not installed here
    config = write_config(tmp_path, export={"gguf_type": "q4_k_m", "formats": ["gguf"]})
    result = forumtune(
        "export", str(config), without_llama_cpp=True, env={"PATH": os.path.dirname(sys.executable)}
    )
    assert "pip install 'forumtune[llama]'" in result.stderr and result.returncode == 2


def test_a_misspelt_builtin_model_lists_the_builtin_ones():
    result = forumtune("config", str(DEMO_CONFIG), "--set", "model.base=builtin:tiny-lama")
    assert_user_error(
        result,
        "model.base: 'builtin:tiny-lama' is not a built-in model",
        "the built-in ones are builtin:tiny-llama",
    )
    assert "Value error" not in result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_on_a_taken_port_names_the_port_and_the_flag_before_loading_anything(tmp_path):
    config = write_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = forumtune("serve", str(config), "--port", str(port))
    assert_user_error(result, f"Port {port} on 127.0.0.1 is already in use", f"--port {port + 1}")
    assert "serving" not in result.stdout + result.stderr


def test_serve_host_flag_is_checked_like_chat_host(tmp_path):
    result = forumtune("serve", str(write_config(tmp_path)), "--host", "0.0.0.0", "--port", str(free_port()))
    assert_user_error(result, "Refusing to listen on 0.0.0.0 without an API key", "chat.api_key")


def test_chat_from_a_missing_gguf_says_to_export_before_asking_for_llama_cpp(tmp_path):
    result = forumtune("chat", str(write_config(tmp_path)), "--source", "gguf", without_llama_cpp=True)
    assert_user_error(result, "no GGUF file at", "demo-f16.gguf", "run `forumtune export` first")
    assert "llama-cpp-python" not in result.stderr


def test_scrape_tells_a_name_that_does_not_resolve_and_keeps_json_output_clean(tmp_path):
    # RFC 6761: .invalid names never resolve, so the lookup fails without reaching any server
    config = write_config(
        tmp_path, scrape={"serve_dir": None, "url": "http://forum.invalid/forums/", "retries": 0}
    )
    result = forumtune("scrape", str(config), "--json")
    assert_user_error(
        result, "the host name forum.invalid does not resolve", "check the host name in scrape.url"
    )
    assert result.stdout == ""  # with --json, stdout is for the summary alone


def test_scrape_tells_a_refused_connection(tmp_path):
    port = free_port()  # bound and released: nothing listens there
    config = write_config(
        tmp_path, scrape={"serve_dir": None, "url": f"http://127.0.0.1:{port}/f/", "retries": 0}
    )
    result = forumtune("scrape", str(config))
    assert_user_error(
        result, f"127.0.0.1:{port} refused the connection", "check the address and port in scrape.url"
    )


def test_an_unreachable_hub_model_fails_at_once_in_one_line(tmp_path):
    hub = {"HF_ENDPOINT": "https://hub.invalid", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": ""}
    started = time.monotonic()
    result = forumtune("plan", str(DEMO_CONFIG), "--set", "model.base=someorg/some-model", env=hub)
    assert time.monotonic() - started < 60, "no 30 s of retries on top of the start-up"
    assert_user_error(
        result,
        "model.base 'someorg/some-model' is a hub id",
        "hub.invalid does not resolve",
        "not in the local cache",
        "set model.base to a local model dir",
    )
    assert "Retry" not in result.stderr and result.stderr.count("\n") == 1

    offline = forumtune(
        "plan", str(DEMO_CONFIG), "--set", "model.base=someorg/some-model", env={**hub, "HF_HUB_OFFLINE": "1"}
    )
    assert_user_error(offline, "HF_HUB_OFFLINE is set", "not in the local Hugging Face cache")


def test_a_cached_hub_model_loads_from_the_cache_when_the_hub_is_unreachable(tmp_path):
    from forumtune.base_model import resolve_base_model

    # the layout huggingface_hub's cache gives a downloaded repo: refs/main names the snapshot
    repo, commit = tmp_path / "hf" / "hub" / "models--someorg--tiny", "0" * 40
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    tiny_config = Path(resolve_base_model("builtin:tiny-llama"), "config.json")
    (repo / "snapshots" / commit / "config.json").write_text(tiny_config.read_text())
    hub = {"HF_ENDPOINT": "https://hub.invalid", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": ""}
    result = forumtune("plan", str(DEMO_CONFIG), "--set", "model.base=someorg/tiny", env=hub)
    assert result.returncode == 0, result.stderr
    assert "estimated peak GPU memory" in result.stdout and "Retry" not in result.stderr


def test_plan_of_a_cpu_run_says_it_plans_a_gpu_and_shows_small_parts_in_mib():
    result = forumtune("plan", str(DEMO_CONFIG), "--set", "train.device=cpu")
    assert result.returncode == 0, result.stderr
    output = " ".join(result.stdout.split())  # rich wraps long lines
    assert "8 GB card: 7.6 GiB usable; the run fits" in output
    assert "train.device is cpu, so this config trains on the CPU" in output
    assert "the figures are for training it on a GPU" in output
    assert "0.00 GiB" not in output and "MiB" in output


def test_bitsandbytes_kernel_download_notice_is_silenced_but_other_warnings_are_not():
    notice = "Failed to load CPU gemm_4bit_forward from kernels-community"
    probe = (
        "import logging, sys\n"
        "if sys.argv[1] == 'quiet':\n"
        "    from forumtune.quiet import quiet_libraries; quiet_libraries()\n"
        "import bitsandbytes\n"
        "logging.getLogger('bitsandbytes.backends.cpu.ops').warning('a warning the user can act on')\n"
        "from bitsandbytes.functional import has_avx512bf16\n"
        "print(has_avx512bf16())\n"
    )
    loud = subprocess.run([sys.executable, "-c", probe, "loud"], capture_output=True, text=True, check=True)
    quiet = subprocess.run([sys.executable, "-c", probe, "quiet"], capture_output=True, text=True, check=True)
    if loud.stdout.strip() == "True":  # bitsandbytes tries the download only on CPUs with AVX512-BF16
        assert notice in loud.stderr
    assert notice not in quiet.stderr
    assert "a warning the user can act on" in quiet.stderr


def test_scrape_json_output_is_json_alone(tmp_path):
    config = write_config(tmp_path, scrape={"requests_per_second": 0, "max_threads": 2})
    result = forumtune("scrape", str(config), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["threads"] == 2
