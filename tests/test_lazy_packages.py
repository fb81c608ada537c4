"""A lazy package (PEP 562: a module-level ``__getattr__`` that imports each name from its home when first
asked for, so a daemon without a backend never loads aiohttp) names every re-exported symbol three times:
imported under ``TYPE_CHECKING`` (for type checkers and editors), in ``_HOMES`` (for the loader) and in
``__all__``. Type checkers need the static imports and the loader cannot read them at run time, so the
three stay written out; this test keeps them the same, so a name added to one and forgotten in another
(importable for mypy but an AttributeError at run time, or the other way round) fails here.

The packages are found, not listed: every ``agent/**/__init__.py`` with a module-level ``__getattr__``.
The checks are tried on a synthetic package whose lists disagree, so the test cannot pass by checking
nothing."""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[1] / "agent"


@dataclass(frozen=True)
class LazyPackage:
    name: str
    type_checking: dict[str, frozenset[str]]  # home module -> names imported from it under TYPE_CHECKING
    homes: dict[str, frozenset[str]]  # home module -> names, as ``_HOMES`` gives them to the loader
    exported: frozenset[str]  # ``__all__``


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def _assigned(tree: ast.Module, target: str) -> ast.expr | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == target for t in node.targets):
            return node.value
    return None


def parse_lazy(name: str, source: str) -> LazyPackage | None:
    """The three lists of a lazy package's source, or None for a package that is not lazy."""
    tree = ast.parse(source)
    if not any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for node in tree.body):
        return None
    type_checking: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module, f"{name}: only `from X import Y` there"
                type_checking.setdefault(stmt.module, set()).update(alias.asname or alias.name for alias in stmt.names)
    homes_node = _assigned(tree, "_HOMES")
    all_node = _assigned(tree, "__all__")
    assert homes_node is not None, f"{name}: a lazy package without _HOMES"
    assert all_node is not None, f"{name}: a lazy package without __all__"
    homes = ast.literal_eval(homes_node)
    return LazyPackage(
        name,
        {module: frozenset(names) for module, names in type_checking.items()},
        {module: frozenset(names) for module, names in homes.items()},
        frozenset(ast.literal_eval(all_node)),
    )


def disagreements(package: LazyPackage) -> list[str]:
    """What one list names that another does not (empty when the three agree)."""
    problems: list[str] = []
    if package.type_checking != package.homes:
        for module in sorted(package.type_checking.keys() | package.homes.keys()):
            static = package.type_checking.get(module, frozenset())
            lazy = package.homes.get(module, frozenset())
            problems += [f"{module}.{n}: under TYPE_CHECKING, not in _HOMES" for n in sorted(static - lazy)]
            problems += [f"{module}.{n}: in _HOMES, not under TYPE_CHECKING" for n in sorted(lazy - static)]
    loaded = frozenset().union(*package.homes.values())
    problems += [f"{n}: in _HOMES, not in __all__" for n in sorted(loaded - package.exported)]
    problems += [f"{n}: in __all__, not in _HOMES" for n in sorted(package.exported - loaded)]
    duplicated = sum(len(names) for names in package.homes.values()) - len(loaded)
    if duplicated:
        problems.append(f"{duplicated} name(s) in _HOMES under two modules")
    return problems


def lazy_packages() -> list[LazyPackage]:
    found = []
    for path in sorted(AGENT.rglob("__init__.py")):
        name = ".".join(path.relative_to(AGENT.parent).parent.parts)
        package = parse_lazy(name, path.read_text())
        if package is not None:
            found.append(package)
    return found


PACKAGES = lazy_packages()


def test_the_lazy_packages_are_found() -> None:
    assert "agent.sync" in {p.name for p in PACKAGES}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_a_lazy_package_names_the_same_symbols_for_type_checkers_the_loader_and_all(package: LazyPackage) -> None:
    assert disagreements(package) == []


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_each_lazy_name_is_the_object_of_its_home_module(package: LazyPackage) -> None:
    lazy = importlib.import_module(package.name)
    for module, names in package.homes.items():
        home = importlib.import_module(module)
        for name in names:
            assert getattr(lazy, name) is getattr(home, name), f"{package.name}.{name}"


def test_an_unknown_name_is_an_attribute_error() -> None:
    missing = "no_such_name"
    for package in PACKAGES:
        with pytest.raises(AttributeError, match=missing):
            getattr(importlib.import_module(package.name), missing)


def test_the_checks_see_lists_that_disagree() -> None:
    source = """
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from pkg.a import One, Two
    from pkg.b import Three
_HOMES = {"pkg.a": ("One",), "pkg.b": ("Three", "Four")}
def __getattr__(name): ...
__all__ = ["One", "Three", "Five"]
"""
    package = parse_lazy("pkg", source)
    assert package is not None
    assert disagreements(package) == [
        "pkg.a.Two: under TYPE_CHECKING, not in _HOMES",
        "pkg.b.Four: in _HOMES, not under TYPE_CHECKING",
        "Four: in _HOMES, not in __all__",
        "Five: in __all__, not in _HOMES",
    ]
    assert parse_lazy("plain", "from pkg.a import One\n") is None
