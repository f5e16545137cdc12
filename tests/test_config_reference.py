"""README.md's config reference is generated from config.py and must agree with it, key by key."""

from __future__ import annotations

import importlib.util
import typing
from pathlib import Path

from pydantic import BaseModel

from forumtune.config import Config

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "config_reference.py"


def load_script():
    spec = importlib.util.spec_from_file_location("config_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def every_key(section: type[BaseModel], prefix: str = "") -> dict[str, typing.Any]:
    keys = {}
    for name, field in section.model_fields.items():
        dotted = f"{prefix}{name}"
        keys[dotted] = field
        for inner in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                keys.update(every_key(inner, f"{dotted}."))
    return keys


def test_the_readme_block_is_what_config_py_says():
    script = load_script()
    assert script.main(["--check"]) == 0, "README.md is stale: run python scripts/config_reference.py"


def test_every_key_has_a_description_and_a_row():
    block = load_script().render()
    keys = every_key(Config)
    assert [key for key, field in keys.items() if not field.description] == []
    missing = [key for key in keys if "." in key and f"| `{key}` |" not in block]
    assert missing == []


def test_a_changed_description_makes_the_check_fail(tmp_path, monkeypatch):
    script = load_script()
    readme = tmp_path / "README.md"
    readme.write_text(script.replace_block(script.README.read_text(), script.render()))
    monkeypatch.setattr(script, "README", readme)
    assert script.main(["--check"]) == 0
    field = Config.model_fields["seed"]
    monkeypatch.setattr(field, "description", "Something else.")
    assert script.main(["--check"]) == 1
    assert script.main([]) == 0 and "Something else." in readme.read_text()
