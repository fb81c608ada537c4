"""The layers of agent/ hold because the source's own imports say so, not because docstrings promise it.

Every ``import`` and ``from ... import`` in agent/**/*.py (relative ones resolved, those inside functions and
under ``TYPE_CHECKING`` included: a late import couples two layers as much as an early one) is mapped to the
layer of the module it names, and each rule below lists what a layer may not reach:

- the pure core (clock, aio, backoff, sightings, schemes, matching, risk) imports only the core, and no
  third-party or stdlib module that does I/O (D-Bus, BLE, SQLite, HTTP, sockets, processes);
- protocol/ (what travels between device and backend) imports only the core and protocol/;
- the I/O edges (ble, store, keys, signing_keys, paths, notify, sdnotify, sync) import no config, configfile,
  daemon, cli or server, nor the other application modules (status, supervisor, doctor, calibration): each
  takes its own settings value and reports its own health type (the sync service may run the exposure
  pipeline on what it pulled);
- server/ imports no sync, ble, store, keys, daemon or cli;
- nothing outside cli/ imports cli/.

Standard library only (ast), so it runs before anything is installed. The rule function is tried on a
synthetic violating source too, so the test cannot pass by checking nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[1] / "agent"

CORE = frozenset({"clock", "aio", "backoff", "sightings", "schemes", "matching", "risk", "timetrust", "feedback"})
PROTOCOL = frozenset({"protocol"})
EDGES = frozenset(
    {"ble", "store", "keys", "signing_keys", "paths", "notify", "sdnotify", "sync", "timesource", "wearable"}
)
APP = frozenset(
    {
        "config",
        "configfile",
        "calibration",
        "exposure",
        "match_workers",
        "status",
        "supervisor",
        "doctor",
        "daemon",
        "provision",
    }
)
SERVER = frozenset({"server"})
CLI = frozenset({"cli", "__main__"})  # python -m agent is the CLI's second door
OTHER = frozenset({"sim", "testbed", "bench", "data"})

# Third-party and stdlib modules whose presence in the core would mean I/O crept in.
CORE_FORBIDDEN_EXTERNAL = frozenset(
    {"dbus_fast", "bleak", "sqlite3", "sqlite_utils", "aiohttp", "socket", "subprocess"}
)


@dataclass(frozen=True)
class Rule:
    """Modules of layer ``importers`` may not import any of ``forbidden`` (top-level agent components)."""

    name: str
    importers: frozenset[str]
    forbidden: frozenset[str]


_EVERYTHING = CORE | PROTOCOL | EDGES | APP | SERVER | CLI | OTHER
RULES = (
    Rule("the pure core imports only the core", CORE, _EVERYTHING - CORE),
    Rule("protocol imports only the core and protocol", PROTOCOL, _EVERYTHING - CORE - PROTOCOL),
    Rule("edges import no config, daemon, cli or server", EDGES, APP - {"exposure"} | CLI | SERVER),
    Rule(
        "server imports no sync, ble, store, keys, daemon or cli",
        SERVER,
        frozenset({"sync", "ble", "store", "keys", "daemon"}) | CLI,
    ),
    Rule("nothing outside cli imports cli", _EVERYTHING - CLI, CLI),
)

# The layout the layers are written for: each of these must exist.
EXPECTED = ("agent/protocol", "agent/configfile.py", "agent/sync", "agent/risk", "agent/ble/names.py", "agent/cli")


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module doing the import
    imported: str  # dotted module (or external top-level name) it reaches
    line: int


def module_name(path: Path, root: Path = AGENT) -> str:
    """agent/ble/edge.py -> agent.ble.edge; agent/risk/__init__.py -> agent.risk."""
    parts = ("agent", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(
    source: str, module: str, is_package: bool, exists: Callable[[str], bool] = lambda dotted: False
) -> Iterator[Import]:
    """Every module ``source`` imports, absolute names; ``from pkg import name`` names pkg.name if that exists."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield Import(module, sub if exists(sub) else target, node.lineno)


def component(dotted: str) -> str | None:
    """The layer key of an agent module (agent.ble.scanner -> ble), None for external modules and agent itself."""
    parts = dotted.split(".")
    if parts[0] != "agent" or len(parts) == 1:
        return None
    return parts[1]


def violations(found: Iterator[Import]) -> list[str]:
    """Each import that breaks a rule, as one readable line."""
    out: list[str] = []
    for imp in dict.fromkeys(found):  # one line per import statement, however many names it brings
        mine, theirs = component(imp.importer), component(imp.imported)
        if mine is None:
            continue
        if theirs is None:
            top = imp.imported.split(".")[0]
            if mine in CORE and top in CORE_FORBIDDEN_EXTERNAL:
                out.append(f"{imp.importer}:{imp.line} imports {imp.imported}: the pure core does no I/O")
            continue
        if mine == theirs:
            continue
        for rule in RULES:
            if mine in rule.importers and theirs in rule.forbidden:
                out.append(f"{imp.importer}:{imp.line} imports {imp.imported}: {rule.name}")
    return out


def _exists(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (AGENT / rel).with_suffix(".py").is_file() or (AGENT / rel / "__init__.py").is_file()


def tree_imports() -> Iterator[Import]:
    for path in sorted(AGENT.rglob("*.py")):
        if path.name.endswith("_pb2.py"):
            continue  # generated by protoc: imports only google.protobuf
        yield from imports_of(path.read_text(), module_name(path), path.name == "__init__.py", _exists)


def test_every_agent_module_has_a_layer() -> None:
    unknown = {component(module_name(p)) for p in AGENT.rglob("*.py")} - _EVERYTHING - {None}
    assert not unknown, f"modules with no layer in tests/test_layers.py: {sorted(unknown)}"


def test_the_tree_keeps_its_layers() -> None:
    found = violations(tree_imports())
    assert not found, "layer violations:\n" + "\n".join(found)


@pytest.mark.parametrize("expected", EXPECTED)
def test_the_target_layout_is_there(expected: str) -> None:
    assert (AGENT.parent / expected).exists(), f"{expected} is missing: the layers above are written for it"


SYNTHETIC = """
import socket
from agent.schemes.base import Scheme
from ..store import Store

def late():
    from agent import daemon
    import agent.cli.sync
"""


def test_the_rules_flag_a_synthetic_violation() -> None:
    """A core module that opens a socket and reaches an edge, the daemon and the CLI is caught on each count."""
    found = violations(imports_of(SYNTHETIC, "agent.risk.windows", False, _exists))
    assert found == [
        "agent.risk.windows:2 imports socket: the pure core does no I/O",
        "agent.risk.windows:4 imports agent.store: the pure core imports only the core",
        "agent.risk.windows:7 imports agent.daemon: the pure core imports only the core",
        "agent.risk.windows:8 imports agent.cli.sync: the pure core imports only the core",
        "agent.risk.windows:8 imports agent.cli.sync: nothing outside cli imports cli",
    ]


def test_an_edge_reading_config_is_flagged() -> None:
    source = "from agent.config import BleSection\nfrom agent.status import AdapterStatus\n"
    assert violations(imports_of(source, "agent.ble.edge", False, _exists)) == [
        "agent.ble.edge:1 imports agent.config: edges import no config, daemon, cli or server",
        "agent.ble.edge:2 imports agent.status: edges import no config, daemon, cli or server",
    ]


def test_the_server_reaching_the_store_is_flagged() -> None:
    source = "from agent import store\nfrom agent.protocol.wire import Body\n"
    assert violations(imports_of(source, "agent.server.app", False, _exists)) == [
        "agent.server.app:1 imports agent.store: server imports no sync, ble, store, keys, daemon or cli"
    ]
