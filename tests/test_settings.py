"""Settings from environment variables: defaults, good values and a clear error for each bad one,
checked through the functions that read them."""
import os
import re
from pathlib import Path

import pytest

from scan_core.data.shards import SHARD_ENV, shard_bytes
from scan_core.explore.workspace import HOME_ENV, ROOTS_ENV, Workspace
from scan_core.settings import env_float, env_int, env_list, env_paths
from ui.host import ALLOWED_HOSTS_ENV, allowed_from_env
from ui.map_events import SHEET_PIXELS_ENV, whole_sheet_limit
from ui.map_figure import MAX_DRAWN_ENV, drawn_at_once

READERS = {SHARD_ENV: shard_bytes, SHEET_PIXELS_ENV: whole_sheet_limit, MAX_DRAWN_ENV: drawn_at_once}


@pytest.mark.parametrize(("name", "expected"), [(SHARD_ENV, 256 * 1024 * 1024), (SHEET_PIXELS_ENV, 3_000_000),
                                                (MAX_DRAWN_ENV, 50_000)])
@pytest.mark.parametrize("unset", [None, "", "  "])
def test_an_unset_or_blank_setting_is_the_default(monkeypatch, name, expected, unset):
    if unset is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, unset)
    assert READERS[name]() == expected


@pytest.mark.parametrize(("name", "text", "expected"), [
    (SHARD_ENV, "0.5", 524_288), (SHARD_ENV, " 2 ", 2_097_152), (SHARD_ENV, "1e-3", 1048),
    (SHEET_PIXELS_ENV, "0", 0), (SHEET_PIXELS_ENV, "+1200", 1200), (MAX_DRAWN_ENV, "1", 1),
    (MAX_DRAWN_ENV, " 300 ", 300)])
def test_a_good_setting_is_read(monkeypatch, name, text, expected):
    monkeypatch.setenv(name, text)
    assert READERS[name]() == expected


@pytest.mark.parametrize(("name", "text", "says"), [
    (SHARD_ENV, "none", "must be a number of megabytes"), (SHARD_ENV, "0", "must be positive"),
    (SHARD_ENV, "-1", "must be positive"), (SHARD_ENV, "nan", "must be a number of megabytes"),
    (SHARD_ENV, "inf", "must be a number of megabytes"),
    (SHEET_PIXELS_ENV, "lots", "must be a whole number of pixels"), (SHEET_PIXELS_ENV, "1.5", "must be a whole number of pixels"),
    (SHEET_PIXELS_ENV, "\u00b2", "must be a whole number of pixels"), (SHEET_PIXELS_ENV, "-1", "must be at least 0"),
    (MAX_DRAWN_ENV, "ten", "must be a positive whole number of points"), (MAX_DRAWN_ENV, "0", "must be at least 1"),
    (MAX_DRAWN_ENV, "1e4", "must be a positive whole number of points")])
def test_a_bad_setting_names_the_variable_and_the_value(monkeypatch, name, text, says):
    monkeypatch.setenv(name, text)
    with pytest.raises(ValueError, match=f"^{name} {says}.*, not {re.escape(repr(text))}$"):
        READERS[name]()


def test_lists_and_folders_skip_empty_items(monkeypatch, tmp_path):
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, " box.local, ,tunnel ,")
    assert allowed_from_env() == ["box.local", "tunnel"]
    monkeypatch.delenv(ALLOWED_HOSTS_ENV)
    assert allowed_from_env() == []
    monkeypatch.setenv("SCAN_TEST_FOLDERS", os.pathsep.join(["a", "", "~/b", " "]))
    assert env_paths("SCAN_TEST_FOLDERS") == [Path("a"), Path.home() / "b"]
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "h"))
    monkeypatch.setenv(ROOTS_ENV, os.pathsep * 2)  # no folder: the workspace's own
    assert Workspace.from_env().data_roots == ((tmp_path / "h" / "data").resolve(), (tmp_path / "h" / "uploads").resolve())


def test_the_readers_check_their_arguments():
    with pytest.raises(ValueError, match="needs a name"):
        env_int("", 3)
    with pytest.raises(ValueError, match="needs a name"):
        env_float("", 1.0)
    with pytest.raises(ValueError, match="needs a separator"):
        env_list("PATH", "")
