"""Reads a PyTorch state dict saved in torch's legacy (pre-1.6, non-zip) format, without torch.

Layout of such a file (torch/serialization.py, ``_legacy_save``): five pickles
in a row (magic number, protocol version, system info, the state dict whose
tensors point at storages through ``persistent_id``, the list of storage keys),
then each storage's raw little-endian bytes preceded by its element count
(8 bytes). The unpickler here resolves only the few names a state dict uses
(OrderedDict, tensor rebuild, storage types); any other global, the usual way a
pickle runs code, is refused.
"""

from __future__ import annotations

import collections
import pickle

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
             "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
             "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        # ("storage", storage type, key, location, element count[, view metadata])
        _, storage_type, key, _, _ = pid[:5]
        return (key, storage_type)


def load_state_dict(path: str) -> dict:
    """{name: numpy array} from a legacy torch checkpoint; ValueError naming the file otherwise."""
    with open(path, "rb") as f:
        unpickler = lambda: _Unpickler(f, encoding="latin1").load()  # noqa: E731
        try:
            if unpickler() != MAGIC:
                raise ValueError("no legacy torch magic number")
            unpickler()  # protocol version
            unpickler()  # system info (byte order, type sizes)
            state = unpickler()
            keys = unpickler()
            types = {v.storage[0]: v.storage[1] for v in state.values() if isinstance(v, _Tensor)}
            storages = {}
            for key in keys:
                count = int.from_bytes(f.read(8), "little")
                dtype = np.dtype(_STORAGES[types[key]]).newbyteorder("<")
                storages[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype)
        except (pickle.UnpicklingError, EOFError, KeyError, AttributeError, TypeError) as err:
            raise ValueError(f"{path}: not a legacy torch state dict ({err})") from None
    out = {}
    for name, value in state.items():
        if not isinstance(value, _Tensor):
            continue
        data = storages[value.storage[0]]
        itemsize = data.dtype.itemsize
        out[name] = np.lib.stride_tricks.as_strided(
            data[value.offset:], shape=value.size,
            strides=[s * itemsize for s in value.stride]).copy()
    return out
