"""One docstring dialect across the package: Markdown backticks (`name`), as the book renders them.

RST roles (:func:`x`) and double backticks show up raw when a docstring is read in the book's listings, in
`help()` or on GitHub, so the package does not use them. (`ruff check`, run by `make test`, keeps the rest.)
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import miniclip

PACKAGE = Path(miniclip.__file__).resolve().parent
RST = re.compile(r":(func|class|mod|meth|attr|data|obj|exc):`|(?<!`)``[^`\n]+``(?!`)")


def docstrings(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield getattr(node, "lineno", 1), doc


def test_docstrings_use_markdown_backticks():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {match.group(0)}"
             for path in sorted(PACKAGE.rglob("*.py")) for line, doc in docstrings(path)
             for match in [RST.search(doc)] if match]
    assert not found, "RST markup in docstrings (write `name`):\n" + "\n".join(found)
