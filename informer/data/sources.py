"""Where data files come from: a local directory, or the official ETDataset with sha256 check."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from informer.errors import InformerError

ENV_DATA_DIR = "INFORMER_DATA_DIR"
ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{name}"
ETT_SHA256 = {
    "ETTh1.csv": "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    "ETTh2.csv": "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
    "ETTm1.csv": "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",
    "ETTm2.csv": "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",
}


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_ett(name: str, data_dir: str | Path, url: str | None = None) -> Path:
    """Download ``name`` (e.g. ``ETTh1.csv``) into ``data_dir``; verified before it appears."""
    if name not in ETT_SHA256:
        raise InformerError(f"data.file: {name!r} is not an ETT file; expected one of "
                            f"{sorted(ETT_SHA256)} to download")
    data_dir = Path(data_dir)
    created = [p for p in (data_dir, *data_dir.parents) if not p.exists()]
    data_dir.mkdir(parents=True, exist_ok=True)
    url = url or ETT_URL.format(name=name)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=data_dir)
    done = False
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while block := response.read(1 << 20):
                out.write(block)
        got = sha256_file(tmp)
        if got != ETT_SHA256[name]:
            raise InformerError(f"{url}: sha256 {got} does not match the expected "
                                f"{ETT_SHA256[name]}; nothing was saved")
        target = data_dir / name
        os.replace(tmp, target)
        done = True
        return target
    except OSError as err:
        raise InformerError(f"{url}: download failed ({err}); place {name} in {data_dir} "
                            f"or set {ENV_DATA_DIR}") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if not done:  # leave no empty directories behind
            for path in created:
                with contextlib.suppress(OSError):
                    path.rmdir()


def resolve_data_file(data_dir: str | Path, name: str, download: bool = True) -> Path:
    """The path of ``name`` in ``data_dir``, downloading official ETT files when absent."""
    path = Path(data_dir).expanduser() / name
    if path.is_file():
        return path
    if download and name in ETT_SHA256:
        return download_ett(name, path.parent)
    raise InformerError(f"{path}: file not found; expected the CSV in data.data_dir (or the "
                        f"{ENV_DATA_DIR} environment variable)")
