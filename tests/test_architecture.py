"""The layering DESIGN.md asks for, checked on the source: channels never import the database,
pure cores never import I/O, and only db/crypto.py touches `cryptography`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PURE = [
    "bot/core",
    "bot/conversation/model.py",
    "bot/conversation/engine.py",
    "bot/conversation/loader.py",
    "bot/conversation/dates.py",
    "bot/conversation/languages.py",
    "bot/conversation/graph.py",
    "bot/conversation/checks.py",
    "bot/conversation/i18n.py",
    "bot/triage",
    "bot/paging/escalation.py",
    "bot/paging/directory.py",
]
IO_MODULES = {
    "db",
    "sqlalchemy",
    "telegram",
    "httpx",
    "apscheduler",
    "aiosqlite",
    "asyncpg",
    "bot.channels",
    "bot.app",
    "cryptography",
}


def imports_of(path: Path) -> set[str]:
    """Return every module name imported by the file at ``path``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def files(*parts: str) -> list[Path]:
    """Return the Python files under the given paths (files or directories)."""
    found: list[Path] = []
    for part in parts:
        path = ROOT / part
        found += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return found


def hits(path: Path, forbidden: set[str]) -> list[str]:
    """Return the imports of ``path`` that fall under any ``forbidden`` package."""
    return sorted(
        name
        for name in imports_of(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


@pytest.mark.parametrize("path", files(*PURE), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_import_no_io(path: Path) -> None:
    """Pure decision modules import no database, transport, scheduler or crypto code."""
    assert hits(path, IO_MODULES) == []


@pytest.mark.parametrize("path", files("bot/channels"), ids=lambda p: p.name)
def test_channels_never_import_the_database(path: Path) -> None:
    """Channel adapters import neither the database layer nor another channel."""
    own = f"bot.channels.{path.stem}"
    others = {"bot.channels." + p.stem for p in files("bot/channels")} - {
        own,
        "bot.channels.__init__",
    }
    assert hits(path, {"db", "sqlalchemy", "bot.app", *others}) == []


@pytest.mark.parametrize(
    "path",
    files("bot/conversation/service.py", "bot/paging/service.py", "bot/outbox.py"),
    ids=lambda p: p.name,
)
def test_services_see_ports_not_the_database(path: Path) -> None:
    """Services work through the storage port; they never import db/ or SQLAlchemy."""
    assert hits(path, {"db", "sqlalchemy", "bot.channels"}) == []


def test_only_the_crypto_module_uses_cryptography() -> None:
    """db/crypto.py is the one module that imports `cryptography`."""
    users = [
        p.relative_to(ROOT).as_posix()
        for p in files("bot", "db", "migrations")
        if hits(p, {"cryptography"})
    ]
    assert users == ["db/crypto.py"]
