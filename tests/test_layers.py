"""The package's layers, checked on its source: every import points down (or sideways within a layer).

The layer table lives in `miniclip/__init__.py`'s docstring, for readers; this test parses that table and every
module's imports with `ast`, so the table and the code cannot drift apart. It also enforces the rules that keep
the dependency graph visible: imports at the top of a file (a function-local import only for an optional heavy
dependency, with a comment), and no `_private` name imported from another module.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import miniclip

PACKAGE = Path(miniclip.__file__).resolve().parent
# Imports inside functions are allowed only for these: optional extras, or heavy libraries only some paths need.
OPTIONAL_HEAVY = {"matplotlib", "myst_nb", "IPython", "open_clip", "open_clip_train", "tensorboard",
                  "torch.utils.tensorboard", "img2dataset", "webdataset", "umap", "selenium", "pandas", "pyarrow",
                  "huggingface_hub", "jupyter_cache"}
# Same-layer pairs that must not import each other: experiments use analyses, never the reverse; the book and the
# command line are two front ends of the same package.
FORBIDDEN = {("analysis", "experiments"), ("book", "cli"), ("cli", "book")}


def layer_table() -> dict[str, int]:
    """{top-level module or subpackage: layer} from the table in miniclip/__init__.py's docstring."""
    table = {}
    for line in (miniclip.__doc__ or "").splitlines():
        match = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if match:
            for name in re.findall(r"`(\w+)`", match.group(2)):
                table[name] = int(match.group(1))
    return table


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layer unit of a dotted module name: `miniclip.eval.zeroshot` -> `eval`; the package itself -> ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imported_modules(path: Path):
    """(import node, absolute module name, inside a function?) for every import of `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = module_name(path)
    is_package = path.name == "__init__.py"

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield child, alias.name, in_function
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[:len(base) - (child.level - 1)]
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module or ""
                yield child, name, in_function
            yield from visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    yield from visit(tree, False)


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer_of(module: str, table: dict[str, int]) -> int | None:
    if module in ("miniclip", "miniclip.__main__"):
        return 0 if module == "miniclip" else max(table.values())  # the entry point sits with the CLI
    return table.get(unit(module))


def test_the_table_names_every_module_and_subpackage():
    table = layer_table()
    assert table, "miniclip/__init__.py's docstring has no layer table"
    units = {unit(module_name(p)) for p in package_files()} - {"", "__main__"}
    assert units - set(table) == set(), f"modules missing from the layer table: {sorted(units - set(table))}"
    assert set(table) - units == set(), f"the layer table names modules that do not exist: {sorted(set(table) - units)}"


def violations() -> list[str]:
    table = layer_table()
    found = []
    for path in package_files():
        module = module_name(path)
        here = layer_of(module, table)
        lines = path.read_text().splitlines()
        for node, target, in_function in imported_modules(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            if in_function:
                heavy = any(target == m or target.startswith(m + ".") for m in OPTIONAL_HEAVY)
                commented = "#" in lines[node.lineno - 1] or "#" in lines[node.lineno - 2]
                if not heavy:
                    found.append(f"{where}: `{target}` imported inside a function (imports go at the top)")
                elif not commented:
                    found.append(f"{where}: optional `{target}` imported inside a function without a comment")
            if not target.startswith("miniclip"):
                continue
            if target == "miniclip" and isinstance(node, ast.ImportFrom):  # `from miniclip import x`: the unit is x
                targets = [f"miniclip.{alias.name}" for alias in node.names]
            else:
                targets = [target]
            for t in targets:
                there = layer_of(t, table)
                if there is not None and here is not None and there > here:
                    found.append(f"{where}: {module} (layer {here}) imports {t} (layer {there})")
                if (unit(module), unit(t)) in FORBIDDEN:
                    found.append(f"{where}: {unit(module)} must not import {unit(t)}")
            if isinstance(node, ast.ImportFrom) and target != module:
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    found.append(f"{where}: private {', '.join(private)} imported from {target}")
    return found


def test_every_import_points_down_and_sits_at_the_top():
    found = violations()
    assert not found, f"{len(found)} layering problems:\n" + "\n".join(found)


def module_graph() -> dict[str, set[str]]:
    """{module: the package modules it imports at module level} (what runs when it is imported)."""
    modules = {module_name(p): p for p in package_files()}
    graph = {}
    for module, path in modules.items():
        edges = set()
        for node, target, in_function in imported_modules(path):
            if in_function or not target.startswith("miniclip"):
                continue
            names = [f"{target}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else [target]
            for name in names + [target]:
                if name in modules and name != module:
                    edges.add(name)
        graph[module] = edges
    return graph


def test_no_import_cycle():
    """Module-level imports form a DAG, so every module can be imported first, on its own."""
    graph, state, cycles = module_graph(), {}, []

    def visit(module, stack):
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_module_imports():
    for path in package_files():
        importlib.import_module(module_name(path))
