"""``scan-explorer app``: the Streamlit app served from where it is installed (the package
``scan_explorer_app``: app.py, pages/, ui/, assets/ and the app's .streamlit/ settings), or from the
checkout the library runs from (app.py beside ``scan_core``). The library imports nothing of the
app nor of Streamlit: ``python -m streamlit run app.py`` takes this process's place."""
from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import NoReturn

from .explore.workspace import HOME_ENV

APP_PACKAGE = "scan_explorer_app"
APP_INSTALL = "pip install 'scan-explorer[app]'"


def app_script() -> Path:
    """The app's ``app.py``: the installed package's, else the checkout's."""
    spec = find_spec(APP_PACKAGE)
    folders = [Path(folder) for folder in (spec.submodule_search_locations or [])] if spec else []
    folders.append(Path(__file__).resolve().parent.parent)
    for folder in folders:
        if (folder / "app.py").is_file():
            return folder / "app.py"
    raise FileNotFoundError(f"the app is not installed (no app.py in {', '.join(map(str, folders))}): {APP_INSTALL}")


def app_command(port: int | None = None, streamlit_args: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``python -m streamlit run <app.py>`` on ``port`` (None: Streamlit's, 8501) with the further
    Streamlit options ``streamlit_args`` (``--server.address 0.0.0.0`` ...)."""
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {port}")
    command = [sys.executable, "-m", "streamlit", "run", str(app_script())]
    return command + (["--server.port", str(port)] if port is not None else []) + list(streamlit_args)


def serve(port: int | None = None, home: Path | None = None, streamlit_args: list[str] | tuple[str, ...] = ()) -> NoReturn:
    """Serve the app in this process's place (:func:`app_command`), on the workspace ``home`` (None:
    ``$SCAN_EXPLORER_HOME``, else ./workspace)."""
    if find_spec("streamlit") is None:
        raise ValueError(f"the app needs Streamlit, which is not installed: {APP_INSTALL}")
    command = app_command(port, streamlit_args)
    if home is not None:
        os.environ[HOME_ENV] = str(Path(home).expanduser().resolve())
    sys.stdout.flush()
    os.execv(command[0], command)
