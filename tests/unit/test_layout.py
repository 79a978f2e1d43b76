"""The layout's import rules (docs/architecture.md, "Map"), read from the source with `ast`.

- an area of `marketplace/` (everything but the assembly `server/`, the tooling `devtools/` and the
  plumbing `lib/`) never imports the assembly, the tooling or `webhooks`;
- the plumbing never imports an area, the assembly or `webhooks` (it is below them all);
- `connect` imports nothing of ours;
- nothing but the tooling and the tests imports `sandbox` (and `sandbox` imports none of ours).

Every import counts, including one inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("marketplace", "connect", "webhooks", "sandbox")
NOT_AREAS = {"server", "devtools", "lib"}


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            # `from marketplace import server` names a subpackage too.
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def role_of(path: Path) -> str:
    """`area`, `server`, `devtools`, `lib`, or the top-level package's name."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "marketplace":
        if len(parts) > 2 and parts[1] in NOT_AREAS:
            return parts[1]
        return "area"
    return parts[0]


def forbidden(role: str, module: str) -> bool:
    if role == "area":
        return any(within(module, p) for p in ("marketplace.server", "marketplace.devtools", "webhooks", "sandbox"))
    if role == "lib":
        below = module.startswith("marketplace.") and module.split(".")[1] not in NOT_AREAS
        return below or any(within(module, p) for p in ("marketplace.server", "webhooks", "sandbox"))
    if role == "connect":
        return any(within(module, p) for p in ("marketplace", "webhooks", "sandbox"))
    if role == "sandbox":
        return any(within(module, p) for p in ("marketplace", "connect", "webhooks"))
    if role in ("server", "webhooks", "migrations"):
        return within(module, "sandbox")
    return False


def source_files() -> list[Path]:
    files = [p for package in (*OURS, "migrations") for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 100, "the packages were not found"
    return files


def violations() -> list[str]:
    found = []
    for path in source_files():
        role = role_of(path)
        for line, module in imported_modules(path):
            if forbidden(role, module):
                found.append(f"{path.relative_to(ROOT)}:{line} ({role}) imports {module}")
    return found


def test_the_layout_rules_hold() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("relative", "module"),
    [
        ("marketplace/orders/x.py", "webhooks.registry"),
        ("marketplace/orders/x.py", "marketplace.server.app"),
        ("marketplace/refunds/x.py", "marketplace.devtools.devstack"),
        ("marketplace/lib/x.py", "marketplace.server"),
        ("marketplace/lib/x.py", "marketplace.auth.service"),
        ("connect/x.py", "marketplace.lib.settings"),
        ("connect/x.py", "webhooks"),
        ("webhooks/x.py", "sandbox.store"),
        ("marketplace/server/x.py", "sandbox"),
        ("sandbox/x.py", "connect.fees"),
    ],
)
def test_the_rules_catch_a_wrong_import(relative: str, module: str) -> None:
    assert forbidden(role_of(ROOT / relative), module)


@pytest.mark.parametrize(
    ("relative", "module"),
    [
        ("marketplace/orders/x.py", "connect.calls"),
        ("marketplace/orders/x.py", "marketplace.lib.db"),
        ("marketplace/lib/x.py", "marketplace.lib.durable"),
        ("marketplace/server/x.py", "webhooks.routes"),
        ("marketplace/devtools/x.py", "sandbox.server"),
        ("webhooks/x.py", "marketplace.orders.confirm"),
    ],
)
def test_the_rules_allow_the_designed_direction(relative: str, module: str) -> None:
    assert not forbidden(role_of(ROOT / relative), module)
