"""An install without the Makefile: requirements.txt's pins within pyproject.toml's bounds, a wheel
that holds the library with its data files and the app (app.py, pages/, ui/, its settings), and that
wheel installed into a fresh environment serving the app from elsewhere through ``scan-explorer app``."""
from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from scan_core import serving
from scan_core.cli import main
from scan_core.data.weights import WeightsUnavailable, fetch
from scan_core.explore.workspace import HOME_ENV
from scan_core.presets import AUTO_FETCH

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: What the distribution is built from (the rest of the repository is for developing it).
SOURCES = ("pyproject.toml", "README.md", "app.py", "pages", "ui", "assets", ".streamlit", "scan_core")
#: Where the wheel puts the app: the repository's layout under one package.
APP_PACKAGE = "scan_explorer_app"


def pins() -> dict[str, Version]:
    """requirements.txt's ``name==version`` lines, by canonical name."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    found = {}
    for line in filter(None, lines):
        name, _, version = line.partition("==")
        assert version, f"requirements.txt pins exact versions: {line!r}"
        found[canonicalize_name(name)] = Version(version)
    return found


def bounds() -> dict[str, Requirement]:
    """pyproject.toml's requirements, the runtime ones and every extra's (the extras naming the
    project itself aside), by canonical name."""
    listed = [*PROJECT["dependencies"], *(r for extra in PROJECT["optional-dependencies"].values() for r in extra)]
    requirements = [Requirement(text) for text in listed]
    return {canonicalize_name(r.name): r for r in requirements if canonicalize_name(r.name) != canonicalize_name(PROJECT["name"])}


def test_every_pin_lies_within_its_bound_and_every_bound_is_pinned():
    pinned, bounded = pins(), bounds()
    assert sorted(pinned) == sorted(bounded)
    outside = [f"{name}=={pinned[name]} not in {r.specifier}" for name, r in bounded.items() if pinned[name] not in r.specifier]
    assert not outside
    # each bound stops before the next major release: the pin's major + 1 is refused, the pin's minor.0 admitted
    for name, r in bounded.items():
        major, minor = pinned[name].release[:2]
        assert Version(f"{major + 1}") not in r.specifier and Version(f"{major}.{minor}") in r.specifier, name


def module_level_imports(path: Path) -> set[str]:
    """The absolute module names ``path`` imports outside its functions and classes (under
    ``if TYPE_CHECKING`` too, though only type checkers run those)."""
    names, statements = set(), list(ast.parse(path.read_text()).body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            statements += [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", []),
                           *(line for handler in getattr(node, "handlers", []) for line in handler.body)]
    return names


def test_the_library_imports_at_module_level_only_what_its_runtime_requirements_install():
    """Each package a scan_core module imports at its top (not inside a function: the optional
    backbones' packages) comes from a distribution pyproject.toml lists as a runtime requirement."""
    runtime = {canonicalize_name(Requirement(text).name) for text in PROJECT["dependencies"]}
    imported = {name.split(".")[0] for path in (ROOT / "scan_core").rglob("*.py") for name in module_level_imports(path)}
    third_party = imported - set(sys.stdlib_module_names) - {"scan_core", "_typeshed"}
    providers = packages_distributions()
    unlisted = {name: providers.get(name) for name in third_party
                if not {canonicalize_name(dist) for dist in providers.get(name, [])} & runtime}
    assert {"torch", "sklearn", "faiss", "PIL", "matplotlib", "pandas"} <= third_party
    assert not unlisted


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (the build leaves nothing in the checkout)."""
    work = tmp_path_factory.mktemp("build")
    source = work / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--wheel-dir", str(work / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (built,) = (work / "dist").glob("scan_explorer-*.whl")
    return built


def test_the_wheel_holds_the_library_its_data_and_the_app(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    library = {p.relative_to(ROOT).as_posix() for p in (ROOT / "scan_core").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert "scan_core/method/imagenet_wordnet.json" in library  # read through Path(__file__) by the naming
    app = {"app.py", "assets/logo.svg", ".streamlit/config.toml",
           *(p.relative_to(ROOT).as_posix() for folder in ("pages", "ui") for p in (ROOT / folder).glob("*.py")),
           *(p.relative_to(ROOT).as_posix() for p in (ROOT / "ui").rglob("*.js"))}
    assert len(app) > 20
    missing = (library | {f"{APP_PACKAGE}/{name}" for name in app}) - names
    assert not missing
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "scan-explorer = scan_core.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_installed_wheel_serves_the_app_from_another_folder(wheel, tmp_path):
    """A fresh environment with only the wheel installed (its dependencies are the project
    environment's, through a .pth path: nothing is downloaded) serves the app from a folder
    without the repository, its workspace where --home says."""
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # a plain path: the project's editable install of scan_core (a .pth there) is not loaded
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    where = tmp_path / "elsewhere"
    where.mkdir()
    located = subprocess.run([python, "-c", "import scan_core, scan_explorer_app, streamlit; print(scan_core.__file__); "
                              "print(*scan_explorer_app.__path__)"], cwd=where, check=True, capture_output=True, text=True)
    assert all(Path(line).is_relative_to(site) for line in located.stdout.split()), located.stdout

    # the installed app.py runs (its imports, its pages, its logo), under Streamlit's own test runner
    script = site / APP_PACKAGE / "app.py"
    code = (f"from streamlit.testing.v1 import AppTest\nat = AppTest.from_file({str(script)!r}, default_timeout=60).run()\n"
            "assert not at.exception, [e.value for e in at.exception]")
    run = subprocess.run([python, "-c", code], cwd=where, capture_output=True, text=True, timeout=120,
                         env=app_env(tmp_path / "home"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "home" / "runs").is_dir()  # the workspace the script opened

    port = free_port()
    server = subprocess.Popen([env_dir / "bin" / "scan-explorer", "app", "--port", str(port)], cwd=where,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=app_env(tmp_path / "home"))
    try:
        assert wait_for(f"http://127.0.0.1:{port}/_stcore/health", server) == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and "<noscript>" in page.read().decode()
    finally:
        server.terminate()
        server.communicate(timeout=30)


def app_env(home: Path) -> dict[str, str]:
    return {**os.environ, HOME_ENV: str(home)}


def wait_for(url: str, server: subprocess.Popen, seconds: float = 60) -> str:
    """The body ``url`` answers once the server is up; fails when it exits or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}: {server.communicate()[0][-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.read().decode()
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {seconds} s")


class Served(Exception):
    """What ``os.execv`` was called with, instead of running it."""


def test_the_app_command_runs_streamlit_on_the_app_with_its_options(monkeypatch, tmp_path):
    def execv(path, argv):
        raise Served(path, argv, os.environ[HOME_ENV])

    monkeypatch.setattr(serving.os, "execv", execv)
    monkeypatch.delenv(HOME_ENV, raising=False)  # restored after the test, whatever serve sets
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Served) as served:
        main(["app", "--port", "8642", "--home", "work", "--", "--server.address", "0.0.0.0"])
    path, argv, home = served.value.args
    assert path == sys.executable
    assert argv == [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", "8642",
                    "--server.address", "0.0.0.0"]
    assert home == str(tmp_path / "work")


def test_the_app_command_refuses_a_port_out_of_range(capsys):
    assert main(["app", "--port", "70000"]) == 2
    assert "--port must be between 1 and 65535" in capsys.readouterr().err


def test_a_timm_backbone_without_its_packages_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # find_spec answers None: not installed
    with pytest.raises(WeightsUnavailable, match=r"lacks timm .*scan-explorer\[foundation\]"):
        fetch(AUTO_FETCH)
