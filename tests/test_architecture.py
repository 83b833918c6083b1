"""The layers of the code hold: who may import whom, checked on the sources and on a fresh interpreter."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scan_core.data.rundir import STAGES
from scan_core.engine.run import implementation

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scan_core"
#: Each layer of the library and the layers it may import (besides itself and the settings).
LAYERS = {"data": set(), "method": {"data"}, "engine": {"data", "method"}, "explore": {"data", "method"}}
#: The settings, importable from every layer (``scan_core.__`` for ``__version__`` and ``__file__``).
SETTINGS = ("scan_core.config", "scan_core.presets", "scan_core.costs", "scan_core.pretrained", "scan_core.settings",
            "scan_core.__")
#: What the explore layer may use of the method: plain numpy geometry and scores (k-means, a graph spectrum, names
#: from class scores or zero-shot text embeddings), no training.
EXPLORE_USES = {"scan_core.method.cosine", "scan_core.method.metrics", "scan_core.method.num_clusters",
                "scan_core.method.graph", "scan_core.method.confidence", "scan_core.method.naming",
                "scan_core.method.zero_shot"}
APP_MAY_IMPORT = ("scan_core.explore", "scan_core.data", "scan_core.config", "scan_core.presets", "scan_core.settings")


def is_setting(name: str) -> bool:
    return name == "scan_core" or name.startswith(SETTINGS)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, relative imports resolved against its package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def library_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def app_files() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py"))]


def test_the_helper_resolves_relative_imports(tmp_path):
    # checked by hand: scan_core/engine/stages/scan.py imports ..context and ...method.clustering
    names = imported_modules(PACKAGE / "engine" / "stages" / "scan.py")
    assert {"scan_core.engine.context", "scan_core.method.clustering", "scan_core.engine.models"} <= names


def test_the_library_never_imports_streamlit():
    offenders = [f"{p.relative_to(ROOT)}: {name}" for p in library_files() for name in imported_modules(p)
                 if name.split(".")[0] in ("streamlit", "plotly", "ui", "pages")]
    assert not offenders


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_the_layers_below_it(layer):
    allowed = {f"scan_core.{name}" for name in {layer, *LAYERS[layer]}}
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in imported_modules(path):
            if not name.startswith("scan_core") or is_setting(name):
                continue
            top = ".".join(name.split(".")[:2])
            if top in allowed and (layer != "explore" or top != "scan_core.method" or
                                   ".".join(name.split(".")[:3]) in EXPLORE_USES):
                continue
            offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders


def test_the_settings_import_nothing_of_the_layers():
    for path in (PACKAGE / "config.py", PACKAGE / "presets.py", PACKAGE / "settings.py"):
        assert all(not n.startswith("scan_core") or is_setting(n) for n in imported_modules(path)), path


def test_pages_and_ui_import_only_the_exploring_layer():
    offenders = [f"{p.relative_to(ROOT)}: {name}" for p in app_files() for name in imported_modules(p)
                 if name.startswith("scan_core.") and not name.startswith(APP_MAY_IMPORT)]
    assert not offenders


def test_no_ui_module_imports_itself_through_others():
    """The ui/ modules import one another without a cycle, imports inside functions included."""
    modules = {f"ui.{p.stem}": p for p in sorted((ROOT / "ui").glob("*.py")) if p.stem != "__init__"}
    imports = {name: sorted(n for n in imported_modules(path) if n in modules and n != name)
               for name, path in modules.items()}
    cycles = []

    def visit(name: str, path: list[str]) -> None:  # depth first; a module met again on the path closes a cycle
        for other in imports[name]:
            if other in path:
                cycles.append(" -> ".join([*path[path.index(other):], other]))
            elif other not in done:
                visit(other, [*path, other])
        done.add(name)

    done: set[str] = set()
    for name in modules:
        if name not in done:
            visit(name, [name])
    assert not cycles


def loaded_after(statement: str) -> set[str]:
    """Module names a fresh interpreter holds after running ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_the_exploring_layer_loads_no_training_stack():
    loaded = loaded_after("import scan_core.explore.jobs, scan_core.explore.results, scan_core.explore.curation, "
                          "scan_core.explore.export, scan_core.data.rundir, scan_core.presets")
    training = {"torch", "torchvision", "faiss", "umap", "numba"}
    assert not training & loaded
    assert not [m for m in loaded if m.startswith("scan_core.engine")]
    assert {m for m in loaded if m.startswith("scan_core.method.")} <= EXPLORE_USES
    assert "streamlit" not in loaded


def library_modules() -> list[str]:
    """The import name of every library module (``__main__`` aside)."""
    return [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in library_files()
            if p.name != "__main__.py"]


def test_the_whole_library_loads_without_streamlit():
    loaded = loaded_after("\n".join(f"import {m}" for m in library_modules()))
    assert "streamlit" not in loaded and "scan_core.engine.stages.scan" in loaded


def test_importing_the_library_leaves_the_warnings_filter_as_it_was():
    """An application importing scan_core keeps its own warnings filter. What the library imports
    is loaded first (torch, numpy, scipy add filters of their own), then every library module."""
    dependencies = sorted({name for p in library_files() for name in imported_modules(p)
                           if name.split(".")[0] not in ("scan_core", "__future__")})
    code = f"""import importlib, json, warnings
for name in {dependencies!r}:
    try:
        importlib.import_module(name)
    except ImportError:  # a name imported from a module, or an optional package
        pass
before = list(warnings.filters)
for name in {library_modules()!r}:
    importlib.import_module(name)
print(json.dumps([repr(f) for f in warnings.filters if f not in before]))"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.splitlines()[-1]) == []


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_stage_has_its_module_with_run_and_load(stage):
    module = implementation(stage)
    assert module.__name__ == f"scan_core.engine.stages.{stage.name}"
    assert callable(module.run) and callable(module.load)
