"""The layers import downwards only: the bottom (``onnxcam``: contract, files, graph toolkit), then
``onnxcam.runtime``, then ``onnxcam.eval`` and ``onnxcam.export`` side by side, the applications
(``onnxcam.apps``) on top. Every import of the package is parsed, function-level ones included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"core": "bottom", "runtime": "runtime", "eval": "eval", "export": "export", "apps": "apps"}
ALLOWED = {
    "bottom": {"bottom"},
    "runtime": {"bottom", "runtime"},
    "eval": {"bottom", "runtime", "eval"},
    "export": {"bottom", "runtime", "export"},
    "apps": {"bottom", "runtime", "eval", "export", "apps"},
}
# Public paths older than the layering (``onnxcam.cli:main``, ``onnxcam.demo``, ``python -m onnxcam``):
# each re-exports an application (and, for the demo, its photos), and holds nothing else.
PUBLIC_ALIASES = {"core/cli.py", "core/demo.py", "core/__main__.py"}


def layer_of_module(module: str) -> str | None:
    """The layer of an absolute module name, or None for a module outside onnxcam."""
    parts = module.split(".")
    if parts[0] != "onnxcam":
        return None
    if len(parts) == 1:
        return "bottom"
    if parts[1] in ("runtime", "eval", "export", "apps"):
        return parts[1]
    if parts[1] in ("cli", "demo", "__main__"):
        return "apps"
    return "bottom"


def imported_modules(tree: ast.Module, package: str) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``tree``; ``package`` resolves relative ones."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def package_of(path: Path) -> str:
    relative = path.relative_to(ROOT)
    top = {"core": "onnxcam", "runtime": "onnxcam.runtime", "eval": "onnxcam.eval", "export": "onnxcam.export",
           "apps": "onnxcam.apps"}[relative.parts[0]]
    return ".".join([top, *relative.parts[1:-1]])


def upward_imports() -> list[str]:
    problems = []
    for folder, layer in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in PUBLIC_ALIASES:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
            for line, module in imported_modules(tree, package_of(path)):
                target = layer_of_module(module)
                if target is not None and target not in ALLOWED[layer]:
                    problems.append(f"{relative}:{line} imports {module} ({layer} -> {target}: upwards)")
    return problems


def test_no_layer_imports_upwards():
    problems = upward_imports()
    assert not problems, "imports that run up the layers:\n" + "\n".join(problems)


@pytest.mark.parametrize("alias", sorted(PUBLIC_ALIASES))
def test_public_aliases_only_re_export(alias):
    tree = ast.parse((ROOT / alias).read_text(encoding="utf-8"))
    body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    imports = [node for node in body if isinstance(node, ast.ImportFrom)]
    assert imports and imports[0].module.startswith("onnxcam.apps."), alias
    assert all(node.module.startswith("onnxcam.") for node in imports), alias
    rest = [node for node in body if node not in imports]
    assert all(isinstance(node, (ast.Assign, ast.Raise)) for node in rest), f"{alias} holds more than a re-export"


def test_the_rule_catches_an_upward_import(tmp_path):
    tree = ast.parse("def f():\n    from onnxcam.apps.report import write_report\n")
    [(line, module)] = imported_modules(tree, "onnxcam.eval")
    assert (line, layer_of_module(module)) == (2, "apps")
    assert "apps" not in ALLOWED["eval"]
    assert layer_of_module("onnxcam.demo") == "apps" and layer_of_module("onnxcam.contract") == "bottom"
    [(_, relative)] = imported_modules(ast.parse("from .boxes import box_iou"), "onnxcam.eval")
    assert relative == "onnxcam.eval.boxes"


def test_every_package_folder_is_packaged():
    """A wheel holds only the packages pyproject.toml lists (its folders are mapped, not found)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        package_of(init) for folder in FOLDERS for init in (ROOT / folder).rglob("__init__.py")
    }
    assert found - listed == set(), f"package folders missing from pyproject.toml: {sorted(found - listed)}"
