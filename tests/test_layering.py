"""Imports point one way and functions stay short, read from the source with ``ast`` (nothing is imported).

The base (models, data, checkpoint, errors, files) must not import the layers built on it (export, the CLI):
the trainer and the library then work without the exporter, and a cycle cannot form. Models sit lowest of
all, needing only fm2onnx's error type and the rule for field names. Every import counts, whether at the top of a module, inside a
function, relative or absolute, or by name through ``importlib.import_module``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("fm2onnx", "models", "export", "bench")
BASE = ("models", "fm2onnx/data", "fm2onnx/checkpoint.py", "fm2onnx/errors.py", "fm2onnx/field_names.py",
        "fm2onnx/files.py")
ABOVE_THE_BASE = ("export", "fm2onnx.cli")
MODELS_MAY_IMPORT = ("fm2onnx.errors", "fm2onnx.field_names")
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # absolute dotted name of what is imported

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: imports {self.module}"


def python_files(*places: str) -> list[Path]:
    files = []
    for place in places:
        path = ROOT / place
        assert path.exists(), f"{place}: no such file or folder; the layering rules name a place that moved"
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
    return files


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


KNOWN_MODULES = {module_name(p) for p in python_files(*PRODUCT)}


def imports_of(path: Path) -> list[Import]:
    """Every module ``path`` imports, relative imports resolved against its package."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # one dot is the package itself, each further dot one package up
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                # ``from pkg import sub`` imports the submodule when there is one, else a name from pkg.
                sub = f"{base}.{alias.name}"
                found.append(Import(path, node.lineno, sub if sub in KNOWN_MODULES else base))
        elif isinstance(node, ast.Call) and (target := dynamic_import_target(node)):
            found.append(Import(path, node.lineno, target))
    return found


def dynamic_import_target(call: ast.Call) -> str | None:
    """The module of ``importlib.import_module("x")`` or ``__import__("x")`` with a literal name."""
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called not in ("import_module", "__import__") or not call.args:
        return None
    first = call.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def within(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def fail_listing(what: str, offenders) -> None:
    if offenders:
        pytest.fail(f"{what} ({len(offenders)}):\n  " + "\n  ".join(map(str, offenders)), pytrace=False)


def test_the_base_never_imports_export_or_the_cli():
    offenders = [i for path in python_files(*BASE) for i in imports_of(path) if within(i.module, ABOVE_THE_BASE)]
    fail_listing(f"base modules importing {' or '.join(ABOVE_THE_BASE)}", offenders)


def test_models_import_nothing_of_fm2onnx_but_its_errors():
    offenders = [i for path in python_files("models") for i in imports_of(path)
                 if within(i.module, ("fm2onnx",)) and not within(i.module, MODELS_MAY_IMPORT)]
    fail_listing(f"models/ importing fm2onnx beyond {', '.join(MODELS_MAY_IMPORT)}", offenders)


def test_no_product_function_is_over_80_lines():
    offenders = []
    for path in python_files(*PRODUCT):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} is {lines} lines")
    fail_listing(f"functions over {MAX_FUNCTION_LINES} lines; split them", offenders)


def test_the_import_reader_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The checks above pass vacuously if the reader misses imports, so it is tried on one of each kind."""
    package = tmp_path / "fm2onnx" / "data"
    package.mkdir(parents=True)
    (package / "probe.py").write_text(
        "import export.plan\n"
        "from ..cli import main\n"
        "from .. import errors\n"
        "def later():\n"
        "    from export import pipeline, export_checkpoint\n"
        "    importlib.import_module('fm2onnx.cli.app')\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)  # module_name() reads paths relative to ROOT
    monkeypatch.setitem(globals(), "KNOWN_MODULES", {"fm2onnx.errors", "export.pipeline"})
    found = [(i.line, i.module) for i in imports_of(package / "probe.py")]
    # A name that is a known submodule is that module; any other name comes from the package itself.
    assert found == [(1, "export.plan"), (2, "fm2onnx.cli"), (3, "fm2onnx.errors"), (5, "export.pipeline"),
                     (5, "export"), (6, "fm2onnx.cli.app")]
