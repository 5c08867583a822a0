"""The engines' seams: what the fast engine may import, the function registry that the lint
reads, and the package surface that other modules use instead of the engine's internals."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sheetgpt

PACKAGE = Path(sheetgpt.__file__).parent
LEAF_MODULES = {"sheetgpt.errors", "sheetgpt.a1", "sheetgpt.progress", "sheetgpt.workers"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sheetgpt_imports(path: Path) -> set[str]:
    """The sheetgpt modules a file imports, anywhere in it (lazy imports too), as absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "sheetgpt")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "sheetgpt":
                continue
            out.add(target)
            for alias in node.names:  # `from . import functions` imports a module
                if (PACKAGE.parent / (target + "." + alias.name).replace(".", "/")).with_suffix(".py").exists():
                    out.add(target + "." + alias.name)
    return out


def test_the_fast_engine_imports_only_leaf_modules_from_outside_the_engines():
    for path in sorted((PACKAGE / "engines").rglob("*.py")):
        outside = {m for m in sheetgpt_imports(path) if not m.startswith("sheetgpt.engines")}
        assert outside <= LEAF_MODULES, f"{module_name(path)} imports {sorted(outside - LEAF_MODULES)}"
    for leaf in LEAF_MODULES:
        path = PACKAGE / (leaf.split(".", 1)[1] + ".py")
        assert sheetgpt_imports(path) == set(), f"{leaf} is not a leaf"


def test_the_fast_engines_modules_import_no_cycle():
    graph = {module_name(p): {m for m in sheetgpt_imports(p) if m.startswith("sheetgpt.engines.fast.")}
             for p in (PACKAGE / "engines" / "fast").glob("*.py") if p.name != "__init__.py"}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join(path + (module,))}"
        if module in done:
            return
        for dep in graph.get(module, ()):
            visit(dep, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_the_lint_uses_only_the_engines_package_surface():
    engines = {m for m in sheetgpt_imports(PACKAGE / "lint.py") if m.startswith("sheetgpt.engines")}
    assert engines <= {"sheetgpt.engines", "sheetgpt.engines.fast"}, engines


# --- the function registry -----------------------------------------------------------------

def test_every_function_the_engine_computes_registered_its_facts():
    from sheetgpt.engines.fast import FUNCTIONS, REGISTRY

    assert FUNCTIONS == {name: f.implementation for name, f in REGISTRY.items() if f.implementation}
    assert {"SUM", "SUMPRODUCT", "MMULT", "INDEX", "MATCH", "_XLFN.VAR.P", "VARP", "TANH"} <= set(FUNCTIONS)
    assert all(REGISTRY[name].portable for name in FUNCTIONS)
    assert {name for name, f in REGISTRY.items() if f.array_args} == {"SUMPRODUCT", "MMULT", "TRANSPOSE"}
    assert REGISTRY["SUM"].takes_range(3) and REGISTRY["MATCH"].takes_range(1)
    assert not REGISTRY["MATCH"].takes_range(0)


def test_a_function_spelled_with_xlfn_registers_its_bare_name_as_lacking_the_prefix():
    from sheetgpt.engines.fast import REGISTRY

    assert REGISTRY["_XLFN.VAR.P"].implementation is REGISTRY["VARP"].implementation is not None
    bare = REGISTRY["VAR.P"]
    assert bare.needs_prefix and not bare.portable and bare.implementation is None and bare.takes_range(0)
    assert REGISTRY["LET"].needs_prefix and not REGISTRY["_XLFN.LET"].portable


def test_portable_functions_the_engine_does_not_compute_are_known_without_an_implementation():
    from sheetgpt.engines.fast import FUNCTIONS, REGISTRY

    for name in ("COS", "HLOOKUP", "COUNTA", "_XLFN.STDEV.S"):
        assert REGISTRY[name].portable and name not in FUNCTIONS
    assert REGISTRY["HLOOKUP"].takes_range(1) and not REGISTRY["HLOOKUP"].takes_range(0)


def test_a_function_cannot_register_twice():
    from sheetgpt.engines.fast.registry import declare

    with pytest.raises(ValueError, match="SUM is registered twice"):
        declare("SUM", portable=True)


def test_the_lint_reads_its_facts_from_the_registry(monkeypatch):
    from sheetgpt.engines.fast import REGISTRY, Function
    from sheetgpt.lint import formula_problems

    assert {rule for rule, _ in formula_problems("FOO(A1:A3)", {})} == {"function", "implicit-intersection"}
    monkeypatch.setitem(REGISTRY, "FOO", Function("FOO", portable=True, range_args=(0,)))
    assert formula_problems("FOO(A1:A3)", {}) == []
    monkeypatch.setitem(REGISTRY, "FOO", Function("FOO", portable=True, array_args=True))
    assert formula_problems("FOO(A1:A3*2)", {}) == []  # an array function takes the range whole
    # ... but a scalar function inside it over the range is what Gnumeric intersects
    assert [rule for rule, _ in formula_problems("FOO(EXP(A1:A3))", {})] == ["elementwise-function"]
