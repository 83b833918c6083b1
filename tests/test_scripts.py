"""The app's JavaScript (``ui/js/*.js``): every file parses as an ES module, checked by an independent
parser (esprima, which reads ECMAScript 2017 and object spread: the files keep to that), and each
component's script, as ``ui/listeners.py`` joins it from the files its Python call names, parses,
defines each function once and defines the shared functions it calls."""
from __future__ import annotations

import ast
from pathlib import Path

import esprima
import pytest

from ui.listeners import JS_DIR, script

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(JS_DIR.rglob("*.js"))
#: the files of functions the components share (no default export of their own)
SHARED = ("every_plot", "image_index")


def components() -> dict[str, tuple[str, ...]]:
    """Each inline component the app's Python defines, ``component("name", "file", ...)`` or
    ``plot_component(...)`` (every_plot first), by name: the script files it joins, read from the source."""
    found = {}
    for path in [*(ROOT / "ui").glob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("component", "plot_component") and path.name != "listeners.py":
                name, *files = [arg.value for arg in node.args]
                found[name] = ("every_plot", *files) if node.func.id == "plot_component" else tuple(files)
    return found


def parse(source: str) -> tuple[esprima.nodes.Module, list[str]]:
    """The module's syntax tree, and the names of the plain functions it calls (``f(...)``)."""
    called = []

    def visit(node, _meta):
        if node.type == "CallExpression" and node.callee.type == "Identifier":
            called.append(node.callee.name)

    return esprima.parseModule(source, delegate=visit), called


def declared(tree) -> list[str]:
    return [node.id.name for node in tree.body if node.type == "FunctionDeclaration"]


def default_exports(tree) -> int:
    return sum(node.type == "ExportDefaultDeclaration" for node in tree.body)


def test_the_scripts_are_all_there():
    names = {path.stem for path in FILES}
    assert {*SHARED, "map_selection", "map_hover", "gallery_clicks", "scroll_into_view", "confusion_clicks"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.relative_to(JS_DIR).as_posix())
def test_each_script_file_parses_as_a_module(path):
    tree, _ = parse(path.read_text(encoding="utf-8"))
    # a shared file only defines functions; a component's file ends in the function Streamlit calls
    assert default_exports(tree) == (0 if path.stem in SHARED else 1)


def test_the_parser_refuses_a_broken_script():
    """The check above can fail: the hover script less its last closing brace, or with a stray one."""
    source = (JS_DIR / "map_hover.js").read_text(encoding="utf-8").rstrip()
    assert source.endswith("}")
    for broken in (source[:-1], source.replace("function draw() {", "function draw() }", 1)):
        with pytest.raises(esprima.Error, match="Unexpected"):
            parse(broken)


def test_each_component_joins_files_that_exist_into_one_module_with_each_function_defined_once():
    found = components()
    assert {"scan_map_selection", "scan_map_hover", "scan_gallery_clicks", "scan_scroll_into_view",
            "scan_confusion_clicks"} <= set(found)
    shared = {name: declared(parse(script(name))[0]) for name in SHARED}
    assert shared == {"every_plot": ["everyPlot"], "image_index": ["imageIndex"]}
    helpers = {f for functions in shared.values() for f in functions}
    copies = {path.stem: set(declared(parse(path.read_text(encoding="utf-8"))[0])) & helpers
              for path in FILES if path.stem not in SHARED}
    assert not any(copies.values()), copies  # a shared function is joined, never written again
    used = set()
    for name, files in found.items():
        tree, called = parse(script(*files))
        functions = declared(tree)
        assert len(functions) == len(set(functions)), (name, functions)
        assert default_exports(tree) == 1, name
        missing = {f for f in helpers if f in called and f not in functions}
        assert not missing, f"{name} calls {missing} but does not join their files"
        used.update(files)
    assert used == {path.stem for path in FILES}  # no file left unused


def test_script_refuses_an_unknown_file_and_no_file():
    with pytest.raises(ValueError, match="no script 'nowhere'"):
        script("every_plot", "nowhere")
    with pytest.raises(ValueError, match="at least one"):
        script()
