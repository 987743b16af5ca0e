"""The layers of docs/design.md, enforced: what each kind of module may import.

- core modules (no I/O) import neither mitmproxy, textual, rich nor asyncio, checked by
  importing each one alone in a fresh interpreter (so an indirect import counts too);
  analysis/ does not import the Session's module (it reads model types);
- only capture, scale.addon (the addons), proxy and mitm_compat import mitmproxy; tui/
  never does, even indirectly;
- nothing outside tui/ imports Rich or Textual (only the TUI renders);
- no screen imports the app: the app imports the screens.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "devconsole"

# Core modules by name; every module of these packages is core too. A name whose file
# does not exist yet (the relay core is being written) is skipped.
CORE_MODULES = [
    "devconsole.model",
    "devconsole.frames",
    "devconsole.ringbuffer",
    "devconsole.session",
    "devconsole.filters",
    "devconsole.wire",
    "devconsole.text",
    "devconsole.samples",
    "devconsole.instances",
    "devconsole.relay",
    "devconsole.rules",
    "devconsole.shaping",
    "devconsole.scenario",
]
CORE_PACKAGES = ["devconsole.decoders", "devconsole.analysis"]
# I/O modules allowed to import mitmproxy (and the entry points, which import them).
# scale.addon is the scale-out's mitmproxy addon: its options are validated the way
# mitmproxy's configure hook asks (OptionsError).
MITMPROXY_ALLOWED = {
    "devconsole.capture",
    "devconsole.proxy",
    "devconsole.mitm_compat",
    "devconsole.scale.addon",
}
FORBIDDEN_IN_CORE = ("mitmproxy", "textual", "rich", "asyncio")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package: str) -> list[str]:
    directory = ROOT.joinpath(*package.split("."))
    return sorted(module_name(p) for p in directory.rglob("*.py"))


def core_modules() -> list[str]:
    names = [m for m in CORE_MODULES if ROOT.joinpath(*m.split(".")).with_suffix(".py").exists()]
    for package in CORE_PACKAGES:
        names.extend(package_modules(package))
    return names


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports, at any level (lazy imports in functions included)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def loaded_after_import(modules: list[str], watch: tuple[str, ...]) -> list[str]:
    """Import ``modules`` in a fresh interpreter; which of ``watch`` got loaded."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps([n for n in {list(watch)!r} if n in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_alone(modules: list[str], watch: tuple[str, ...]) -> None:
    """None of ``modules`` loads any of ``watch``. They are imported together in one fresh
    interpreter; on a failure each is imported alone, to name the culprit."""
    if loaded_after_import(modules, watch) == []:
        return
    culprits = {m: found for m in modules if (found := loaded_after_import([m], watch))}
    raise AssertionError(f"imports it must not make: {culprits}")


def test_the_lists_name_real_modules() -> None:
    core = core_modules()
    assert "devconsole.model" in core and "devconsole.analysis.secrets" in core
    assert len(core) >= 15
    assert set(all_modules()) >= MITMPROXY_ALLOWED


def test_core_modules_import_no_io_and_no_ui() -> None:
    check_alone(core_modules(), (*FORBIDDEN_IN_CORE, "devconsole.tap", "devconsole.tui"))


def test_the_check_names_a_module_that_breaks_the_rule() -> None:
    with pytest.raises(AssertionError, match=r"devconsole\.tap.*asyncio"):
        check_alone(["devconsole.model", "devconsole.tap"], FORBIDDEN_IN_CORE)


def test_analysis_reads_model_types_not_the_session_module() -> None:
    check_alone(package_modules("devconsole.analysis"), ("devconsole.session",))


def test_the_tui_never_loads_mitmproxy() -> None:
    check_alone(package_modules("devconsole.tui"), ("mitmproxy",))


def test_only_the_mitmproxy_addons_proxy_and_mitm_compat_import_mitmproxy() -> None:
    importers = {
        name
        for name, path in all_modules().items()
        if any(n == "mitmproxy" or n.startswith("mitmproxy.") for n in imported_names(path))
    }
    assert importers <= MITMPROXY_ALLOWED, importers - MITMPROXY_ALLOWED


def test_only_the_tui_imports_rich_or_textual() -> None:
    offenders = {
        name
        for name, path in all_modules().items()
        if not name.startswith("devconsole.tui")
        for n in imported_names(path)
        if n.split(".")[0] in ("rich", "textual")
    }
    assert offenders == set()


def test_no_screen_imports_the_app() -> None:
    offenders = {
        name
        for name, path in all_modules().items()
        if name.startswith("devconsole.tui.")
        and name != "devconsole.tui.app"
        and "devconsole.tui.app" in imported_names(path)
    }
    assert offenders == set()


def test_the_source_interface_is_io_but_imports_no_proxy_and_no_ui() -> None:
    # devconsole.source is asynchronous (asyncio), so it is not core; viewers of any kind
    # (TUI, CLI) depend on it, so it must stay free of mitmproxy and the UI.
    check_alone(["devconsole.source"], ("mitmproxy", "textual", "rich"))
