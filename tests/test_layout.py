"""The shape issue 14 asks of the I/O shells: no module over 600 lines in client/ and
server/; no hand-driven coroutines and no database driver's internals (each SQLite
connection is owned by one worker thread and used through plain functions); and a sync
engine that reaches NATS and SQLite only through its two ports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELLS = sorted(path for folder in ("client", "server") for path in (ROOT / folder).rglob("*.py"))
LIMIT = 600


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_shell_module_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in SHELLS
        if (lines := len(path.read_text().splitlines())) > LIMIT
    }
    assert long == {}, f"modules over {LIMIT} lines: {long}"


def test_no_coroutine_is_driven_by_hand_and_no_driver_internals() -> None:
    offenders: list[str] = []
    for path in SHELLS:
        tree = _tree(path)
        where = str(path.relative_to(ROOT))
        if any(name.split(".")[0] == "aiosqlite" for name in _imports(tree)):
            offenders.append(f"{where}: imports aiosqlite")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "send"
                and len(node.args) == 1
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value is None
            ):
                offenders.append(f"{where}:{node.lineno}: .send(None) drives a coroutine")
            if isinstance(node, ast.Attribute) and node.attr in {"_execute", "_tx_execute"}:
                offenders.append(f"{where}:{node.lineno}: a driver's private {node.attr}")
    assert offenders == []


def test_the_sync_engine_uses_only_its_ports() -> None:
    imported = _imports(_tree(ROOT / "client" / "sync" / "engine.py"))
    direct = {name for name in imported if name.split(".")[0] in {"nats", "sqlite3"}}
    assert direct == set(), f"client/sync/engine.py imports {direct}: go through the ports"
