"""The package layout is the picture of the pipeline: no stage package imports another.

A stage reads the previous stage's files through the shared modules (forumtune.layout, records,
forum_store, metrics_log, models, ...), never the other stage's internals. These tests read every
module's imports (lazy ones inside functions too) and fail on an edge the layout forbids, naming the
module, the line and the import. docs/ARCHITECTURE.md says where shared code goes instead.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "forumtune"
STAGES = {"scrape", "index", "data", "train", "eval", "export", "chat"}
# Components: packages that are neither stages nor shared by all. kernels/ is the training fast path.
COMPONENTS = {"kernels": {"train"}}  # component -> the stage packages that may import it
ORCHESTRATION = {"pipeline", "cli"}  # they call every stage's entry function
# Shared modules that still import a stage package, each with the reason. An entry is removed once its
# import is gone (test_every_allowed_exception_is_still_needed says when).
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Edge:
    module: str  # dotted, below forumtune: "eval.stage"
    line: int
    imported: str  # dotted, below forumtune: "train.loading"

    @property
    def owner(self) -> str:
        """The package a module belongs to ("eval"), or the module itself at the top level ("config")."""
        return self.module.split(".")[0]

    @property
    def target(self) -> str:
        return self.imported.split(".")[0]

    def __str__(self) -> str:
        path = f"src/forumtune/{self.module.replace('.', '/')}.py"
        return f"{path}:{self.line} imports forumtune.{self.imported}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """forumtune modules an import statement names, dotted below forumtune."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolved against the importing module's package
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = ["forumtune", *package[: len(package) - node.level + 1]]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        names = [f"{stem}.{alias.name}" if stem == "forumtune" else stem for alias in node.names]
    else:
        return []
    inside = [name.removeprefix("forumtune.") for name in names if name.startswith("forumtune.")]
    return list(dict.fromkeys(inside))


def import_edges() -> list[Edge]:
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            for imported in imported_names(node, module, path.name == "__init__.py"):
                edges.append(Edge(module, node.lineno, imported))
    return edges


def forbidden(edge: Edge) -> str | None:
    """Why the layout forbids this import, or None."""
    owner, target = edge.owner, edge.target
    if owner == target or owner in ORCHESTRATION:
        return None
    if target in ORCHESTRATION:
        return f"only the command line calls {target}.py; a module it calls must not call back"
    if owner in STAGES and target in STAGES:
        return (
            f"the {owner} stage may not import the {target} stage: read its files through a shared "
            "module (forumtune.layout, records, forum_store, metrics_log, models) or move what both "
            "need into one"
        )
    if target in COMPONENTS and owner not in COMPONENTS[target]:
        users = ", ".join(sorted(COMPONENTS[target]))
        return f"{target}/ is the fast path of {users}; {owner} may not use it"
    shared = owner not in STAGES and owner not in COMPONENTS
    if (shared or owner in COMPONENTS) and target in STAGES and (owner, target) not in KNOWN_EXCEPTIONS:
        return (
            f"{owner} is shared by every stage, so it may not import the {target} stage (that would tie "
            "every stage to it); move what it needs into a shared module"
        )
    return None


def test_no_stage_imports_another_stage():
    problems = [f"{edge}: {reason}" for edge in import_edges() if (reason := forbidden(edge))]
    assert not problems, "imports the package layout forbids:\n" + "\n".join(problems)


def test_every_allowed_exception_is_still_needed():
    present = {(edge.owner, edge.target) for edge in import_edges()}
    stale = [f"{owner} -> {target}" for owner, target in KNOWN_EXCEPTIONS if (owner, target) not in present]
    assert not stale, f"remove from KNOWN_EXCEPTIONS, the import is gone: {stale}"


@pytest.mark.parametrize(
    ("module", "source", "message"),
    [
        (
            "eval.stage",
            "from forumtune.train.loading import load_adapter_model",
            "the eval stage may not import the train stage",
        ),
        ("chat.stage", "from forumtune.pipeline import gguf_name", "only the command line calls pipeline.py"),
        ("data.build", "from ..scrape import store", "the data stage may not import the scrape stage"),
        ("export.stage", "import forumtune.kernels.lora_linear", "kernels/ is the fast path of train"),
        (
            "records",
            "def f():\n    from forumtune.data.encode import IGNORE_INDEX",
            "records is shared by every stage, so it may not import the data stage",
        ),
    ],
)
def test_a_new_edge_fails_with_the_module_and_the_import(module, source, message):
    edges = [
        Edge(module, node.lineno, name)
        for node in ast.walk(ast.parse(source))
        for name in imported_names(node, module, is_package=False)
    ]
    assert edges, source
    reason = forbidden(edges[0])
    assert reason is not None and message in reason
    assert f"src/forumtune/{module.replace('.', '/')}.py:" in str(edges[0])


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("train.loop", "from forumtune.kernels import lora_linear"),
        ("eval.stage", "from forumtune.records import read_rows"),
        ("pipeline", "from forumtune.train.loop import run_train"),
        ("scrape.sites.markup", "from ..models import ThreadPage"),
    ],
)
def test_allowed_edges_pass(module, source):
    edges = [
        Edge(module, node.lineno, name)
        for node in ast.walk(ast.parse(source))
        for name in imported_names(node, module, is_package=False)
    ]
    assert edges and all(forbidden(edge) is None for edge in edges)
