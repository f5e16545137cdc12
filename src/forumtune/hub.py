"""A model.base given as a Hugging Face hub id: can it be loaded? Said in a second, in one line.

Left alone, huggingface_hub retries an unreachable hub for about 30 seconds with a log line per try and
then raises an error that does not name the config key. Before a command loads the model, one short TCP
probe of the hub tells: reachable (go on), unreachable with the model in the local cache (load it from
there, offline, without the retries), or unreachable without it (a ConfigError saying what to do).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from forumtune.config import BUILTIN_PREFIX
from forumtune.errors import ConfigError
from forumtune.net import probe_connection

HUB_PROBE_TIMEOUT_S = 3.0
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def is_hub_id(base: str) -> bool:
    """model.base names a hub repo (org/name), not a built-in model or a local folder."""
    if base.startswith((BUILTIN_PREFIX, "/", "./", "../", "~")) or Path(base).exists():
        return False
    return HUB_ID.match(base) is not None


def is_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def use_offline_hub() -> None:
    """Load from the local cache from now on, without asking the hub (huggingface_hub reads it at each call)."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True


def check_hub_model(base: str, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> None:
    """Raise ConfigError at once when model.base is a hub id that can be neither downloaded nor read from the
    cache; when only the cache has it, switch to offline mode so that loading does not wait on retries."""
    if not is_hub_id(base):
        return
    from huggingface_hub import constants

    cached = is_cached(base)
    if constants.HF_HUB_OFFLINE:
        if not cached:
            raise ConfigError(
                f"model.base {base!r} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                "HF_HUB_OFFLINE is set: unset HF_HUB_OFFLINE to download it, or set model.base to a local "
                "model dir"
            )
        return
    endpoint = urlsplit(constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    problem = probe_connection(host, endpoint.port or (80 if endpoint.scheme == "http" else 443), timeout_s)
    if problem is None:
        return
    if cached:
        use_offline_hub()
        return
    raise ConfigError(
        f"model.base {base!r} is a hub id, but the hub cannot be reached: {problem.description}, and the model "
        f"is not in the local cache ({constants.HF_HUB_CACHE}); connect to the network and run again, "
        "or set model.base to a local model dir"
    )
