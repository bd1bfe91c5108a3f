"""The IDX file format of MNIST (and Fashion-MNIST, KMNIST, EMNIST): read, write, find.

Layout (big-endian): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions d, then d uint32 sizes, then the data in C order.
Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy loads inside read/write: config validation calls find() only
    import numpy as np

_TYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES: dict[str, int] = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D, "float64": 0x0E}


def find(directory: str | Path, name: str) -> Path | None:
    """``directory/name``, or ``directory/name.gz`` when only that exists; None when neither does."""
    base = Path(directory).expanduser() / name
    for candidate in (base, base.with_name(base.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (ValueError naming the file when it is not IDX, truncated or a
    corrupt .gz)."""
    import numpy as np

    path = Path(path)
    try:
        with _open(path) as f:
            header = f.read(4)
            if len(header) != 4 or header[0] != 0 or header[1] != 0 or header[2] not in _TYPES:
                raise ValueError(f"{path}: not an IDX file (bad magic number {header.hex()})")
            ndim = header[3]
            dims = f.read(4 * ndim)
            if len(dims) != 4 * ndim:
                raise ValueError(f"{path}: truncated IDX header ({len(dims)} of {4 * ndim} size bytes)")
            shape = struct.unpack(f">{ndim}I", dims)
            dtype = np.dtype(_TYPES[header[2]])
            data = f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: corrupt gzip data ({e})") from None
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: IDX header promises {expected} bytes of data for shape {shape}, found {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def write(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when the name ends in .gz)."""
    import numpy as np

    path = Path(path)
    array = np.asarray(array)
    code = _CODES[array.dtype.name]
    payload = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(array.dtype.newbyteorder(">"), copy=False).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(payload)
    return path
