"""Fetch MM-IMDb (Arevalo et al. 2017) into the layout ``records.load_mmimdb`` reads.

The archive (``mmimdb.tar.gz``, about 8 GB; the dataset authors' site
http://lisi1.unal.edu.co/mmimdb/ links it, the archive.org mirror is the
default here, ``--url`` takes any other) is
downloaded to ``DIR/mmimdb.tar.gz.part`` with HTTP range requests, so a broken
or killed download resumes where it stopped; it is verified (the size the
server announced, and a SHA-256 when one is given) before it takes its final
name, then unpacked with tarfile's "data" filter (no absolute paths, no
``..``, no links out of the folder) and checked to hold ``split.json`` and
``dataset/``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request

from mmgenre import files, runs
from mmgenre.data.records import DataError, detect_layout

MMIMDB_URL = "https://archive.org/download/mmimdb/mmimdb.tar.gz"
CHUNK = 1 << 20


def _progress(done: int, total: int | None, started: float):
    rate = done / max(time.time() - started, 1e-6) / 1e6
    if total:
        line = (f"downloading [{'#' * int(30 * done / total):<30}] "
                f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB {rate:.1f} MB/s")
    else:
        line = f"downloading {done / 1e6:,.0f} MB {rate:.1f} MB/s"
    sys.stderr.write(("\r" + line) if sys.stderr.isatty() else line + "\n")
    sys.stderr.flush()


def fetch(url: str, path: str, sha256: str | None = None, timeout: float = 60.0) -> str:
    """Downloads ``url`` to ``path``, resuming ``path.part``; returns ``path``."""
    if os.path.exists(path):
        return path
    part = path + ".part"
    done = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and done:  # nothing left to fetch: the part is whole
            response = None
        else:
            raise DataError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise DataError(f"{url}: cannot connect ({getattr(err, 'reason', err)}); rerun to resume, "
                        "or pass --url with a mirror") from None
    total = None
    if response is not None:
        with response:
            if done and response.status != 206:
                done = 0  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            started, last = time.time(), 0.0
            with open(part, "ab" if done else "wb") as f:
                try:
                    while chunk := response.read(CHUNK):
                        f.write(chunk)
                        done += len(chunk)
                        if time.time() - last > 2:
                            _progress(done, total, started)
                            last = time.time()
                except (OSError, urllib.error.URLError) as err:
                    raise DataError(f"{url}: download broke off after {done:,} bytes ({err}); "
                                    "rerun the same command to resume") from None
            _progress(done, total, started)
    if total is not None and os.path.getsize(part) != total:
        raise DataError(f"{url}: got {os.path.getsize(part):,} of {total:,} bytes; rerun to resume")
    if sha256:
        got = files.file_sha256(part)
        if got != sha256:
            os.remove(part)
            raise DataError(f"{url}: SHA-256 {got} differs from {sha256}; the file "
                            "was removed, rerun to fetch it again")
    os.replace(part, path)
    return path


def check_download_dir(out_dir: str, archive_name: str, overwrite: bool = False):
    """Refuses an ``out_dir`` holding files mmgenre did not write (the user's own dataset,
    say) before anything is fetched: only a new or empty folder, a partial download of this
    archive, or a folder an earlier download finished (``runs.OUTPUT_MARKER``) is filled."""
    if overwrite or not os.path.isdir(out_dir):
        runs.check_output_dir(out_dir, overwrite)  # a file in the way is still refused
        return
    entries = set(os.listdir(out_dir))
    ours = {archive_name, archive_name + ".part", STAGING, runs.OUTPUT_MARKER}
    if runs.OUTPUT_MARKER not in entries and entries - ours:
        raise DataError(f"{out_dir} holds files mmgenre did not write (e.g. "
                        f"{sorted(entries - ours)[0]!r}); download into a new or empty folder, or "
                        "pass --overwrite to replace what the archive holds")


STAGING = ".unpacking"


def download_mmimdb(out_dir: str, url: str = MMIMDB_URL, sha256: str | None = None,
                    keep_archive: bool = False, overwrite: bool = False) -> str:
    """Fetches and unpacks MM-IMDb; returns the dataset folder (holding split.json, dataset/)."""
    name = os.path.basename(url) or "mmimdb.tar.gz"
    check_download_dir(out_dir, name, overwrite)
    os.makedirs(out_dir, exist_ok=True)
    archive = fetch(url, os.path.join(out_dir, name), sha256)
    staging = os.path.join(out_dir, STAGING)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")  # refuses absolute paths, "..", outside links
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{archive}: not a readable tar archive ({err}); delete it and rerun") from None
    root = staging
    entries = os.listdir(staging)
    if len(entries) == 1 and os.path.isdir(os.path.join(staging, entries[0])):
        root = os.path.join(staging, entries[0])  # the archive's own top folder (mmimdb/)
    try:
        if detect_layout(root) != "mmimdb":
            raise DataError("")
    except DataError:
        raise DataError(f"{archive}: unpacked, but holds no split.json and dataset/ "
                        "(MM-IMDb layout)") from None
    for name in os.listdir(root):
        target = os.path.join(out_dir, name)
        if os.path.exists(target):
            shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
        os.replace(os.path.join(root, name), target)
    shutil.rmtree(staging, ignore_errors=True)
    files.write_text(os.path.join(out_dir, runs.OUTPUT_MARKER), "mmgenre datasets download\n")
    if not keep_archive:
        os.remove(archive)
    return out_dir
