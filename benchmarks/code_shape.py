"""The code's shape, for docs/house.md: lines per module, functions over 60 lines, and blocks
of 6 or more lines written twice (after stripping indentation, comments and blank lines).

    python benchmarks/code_shape.py [REV]   # REV: a git revision (default: the working tree)

Reads the files of kboolq/ and tuning/ (at REV through `git show`); imports nothing of kboolq.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kboolq", "tuning")
LONG = 60  # lines: a function longer than this is listed
BLOCK = 6  # lines: a repeated run at least this long is a duplicated block
# What writing and finishing a run takes: where these are called is where the protocol is spelt
PROTOCOL = ("write_target", "lock_output", "recover", "claim_output", "remove_leftovers",
            "staged", "evaluate_splits", "write_card", "claimed", "finish_run")  # fmt: skip
RUN_FILES = ("model.keras", "config.json", "history.csv", "metrics.json", "README.md",
             "learning_curves.png", "members.json", "seeds.json", "report.json")  # fmt: skip


def sources(rev: str | None) -> dict[str, str]:
    if rev is None:
        return {
            str(p.relative_to(ROOT)): p.read_text()
            for package in PACKAGES
            for p in sorted((ROOT / package).rglob("*.py"))
        }
    names = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, *PACKAGES],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return {
        name: subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
        for name in names if name.endswith(".py")
    }  # fmt: skip


def long_functions(path: str, text: str) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > LONG:
                found.append((f"{path}:{node.lineno} {node.name}", length))
    return found


def normalized(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each line that is code: not blank, a comment, an import or a
    docstring."""
    skip = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            skip.update(range(node.lineno, node.end_lineno + 1))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip.update(range(node.lineno, node.end_lineno + 1))  # a docstring
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0].strip()
        if number not in skip and len(code) > 3:
            lines.append((number, code))
    return lines


def duplicated_blocks(files: dict[str, str]) -> list[list[str]]:
    """Runs of BLOCK normalized lines that occur at two or more places, merged into the
    longest run at each place."""
    seen: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for path, text in files.items():
        lines = normalized(text)
        for i in range(len(lines) - BLOCK + 1):
            window = tuple(code for _, code in lines[i : i + BLOCK])
            seen[window].append((path, lines[i][0]))
    places = defaultdict(set)
    for spots in seen.values():
        if len(spots) > 1:
            key = tuple(sorted(spots))
            places[key[0][0], key[-1][0]].add(key)
    blocks = []
    for groups in places.values():
        starts = sorted(groups)
        blocks.append([f"{path}:{line}" for path, line in starts[0]])
        previous = starts[0]
        for group in starts[1:]:
            if any(abs(a[1] - b[1]) > BLOCK for a, b in zip(group, previous, strict=False)):
                blocks.append([f"{path}:{line}" for path, line in group])
            previous = group
    return blocks


def call_sites(files: dict[str, str]) -> dict[str, list[str]]:
    """Where each PROTOCOL function is called (not where it is defined)."""
    found = defaultdict(list)
    for path, text in files.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", None))
                if name in PROTOCOL:
                    found[name].append(f"{path}:{node.lineno}")
    return found


def file_literals(files: dict[str, str]) -> list[str]:
    """Modules that spell a run file's name as a string literal."""
    return sorted(
        path
        for path, text in files.items()
        if any(
            isinstance(node, ast.Constant) and node.value in RUN_FILES
            for node in ast.walk(ast.parse(text))
        )
    )


def main() -> int:
    rev = sys.argv[1] if len(sys.argv) > 1 else None
    files = sources(rev)
    print(f"# {rev or 'working tree'}: {len(files)} modules, "
          f"{sum(t.count(chr(10)) for t in files.values())} lines")  # fmt: skip
    print("\n## lines per module (over 200)")
    for path, text in sorted(files.items(), key=lambda kv: -kv[1].count("\n")):
        if text.count("\n") > 200:
            print(f"{text.count(chr(10)):5d}  {path}")
    print(f"\n## functions over {LONG} lines")
    for name, length in sorted(
        (f for path, text in files.items() for f in long_functions(path, text)),
        key=lambda f: -f[1],
    ):
        print(f"{length:5d}  {name}")
    print("\n## where writing and finishing a run is spelt out (call sites)")
    sites = call_sites(files)
    for name in PROTOCOL:
        places = sorted({place.split(":")[0] for place in sites.get(name, [])})
        print(f"{len(sites.get(name, [])):5d}  {name}: {', '.join(places)}")
    literals = file_literals(files)
    print(f"\n## modules that spell a run file's name: {len(literals)}  {', '.join(literals)}")
    blocks = duplicated_blocks(files)
    print(f"\n## blocks of {BLOCK}+ lines written more than once: {len(blocks)}")
    for places in blocks:
        print("  " + "  ".join(places))
    return 0


if __name__ == "__main__":
    sys.exit(main())
