"""Unpickling that cannot run code: only scipy.sparse matrices of numeric numpy arrays come back.

``pickle.load`` calls whatever global a file names (a ``__reduce__`` returning
``(os.system, ("...",))`` runs a shell command). The authors' dataset files (``trnMat.pkl``,
``valMat.pkl``, ``tstMat.pkl``, ``Similarity_*.pkl``) hold plain scipy.sparse matrices, so
:class:`RestrictedUnpickler` resolves only the globals those pickles name
(:data:`ALLOWED_GLOBALS`); any other global raises :class:`ForbiddenGlobal` before anything is
imported or called.

Even the allowed names resolve to inert stand-ins, not to numpy or scipy: a stand-in records
what the pickle says (a dtype string, an array's shape and bytes, a matrix's attribute dict)
and checks it. So no numpy or scipy code runs on unchecked input while unpickling (no
constructor with a huge shape, no dtype state with odd flags, no object array), and
:func:`load_sparse` then builds plain numpy arrays from the file's bytes and checks the
matrix (index ranges, lengths, ``indptr``) before scipy ever sees it.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from typing import Any

import numpy as np

MAX_DIM = 2**31 - 1  # int32 index range; larger shapes are not a recommendation dataset


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a global outside :data:`ALLOWED_GLOBALS`; ``name`` is ``module.name``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"refuses to load global {name!r}")
        self.name = name


class MalformedSparse(ValueError):
    """Allowed globals used in a way no sparse-matrix pickle does, or arrays that do not fit."""


# --- stand-ins for the allowed globals ----------------------------------------------------------

class _DType:
    """``numpy.dtype(spec, align, copy)``: a plain bool, integer or real type only."""

    dtype: np.dtype | None = None

    def __init__(self, spec: Any = None, align: Any = False, copy: Any = True) -> None:
        try:
            dtype = np.dtype(spec) if isinstance(spec, str) else None
        except Exception:  # an unparsable type string
            dtype = None
        if dtype is None or dtype.kind not in "biuf":
            raise MalformedSparse(f"refuses numpy dtype {spec!r:.40} (only bool, integer and real arrays are allowed)")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        # numpy writes (3, byteorder, subarray, names, fields, elsize, alignment, flags)
        if (self.dtype is None or not isinstance(state, tuple) or len(state) != 8 or state[0] != 3
                or state[2:] != (None, None, None, -1, -1, 0) or state[1] not in ("<", ">", "|", "=")):
            raise MalformedSparse("malformed numpy dtype")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


class _Array:
    """``numpy.ndarray``: ``array`` is set from the file's bytes by the pickle's BUILD."""

    array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        # numpy writes (1, shape, dtype, is_fortran, raw bytes)
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1 or not isinstance(state[3], bool):
            raise MalformedSparse("malformed numpy array")
        _, shape, dtype, fortran, raw = state
        self.array = _from_bytes(raw, dtype, shape, "F" if fortran else "C")


def _from_bytes(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if (not isinstance(raw, (bytes, bytearray)) or not isinstance(dtype, _DType) or dtype.dtype is None
            or order not in ("C", "F")
            or not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape)):
        raise MalformedSparse("malformed numpy array")
    if math.prod(shape) * dtype.dtype.itemsize != len(raw):
        raise MalformedSparse("numpy array shape disagrees with its data")
    return np.frombuffer(raw, dtype.dtype).reshape(shape, order=order)


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _Array:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``: an empty array to BUILD."""
    if cls is not _Array:
        raise MalformedSparse("malformed numpy array")
    return _Array()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    """``numpy.core.numeric._frombuffer``: how pickle protocol 5 writes an array."""
    out = _Array()
    out.array = _from_bytes(buf, dtype, shape, order)
    return out


def _scalar(dtype: Any, raw: Any) -> Any:
    """``numpy.core.multiarray.scalar``: a numpy scalar (e.g. an np.int64 in a shape)."""
    return _from_bytes(raw, dtype, (), "C")[()]


class _Sparse:
    """A scipy.sparse matrix: only its attribute dict is kept, read by :func:`load_sparse`."""

    format = ""
    state: dict | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise MalformedSparse("malformed sparse matrix")
        self.state = state


class _COO(_Sparse):
    format = "coo"


class _CSR(_Sparse):
    format = "csr"


class _CSC(_Sparse):
    format = "csc"


def _allowed() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}
    for stub in (_COO, _CSR, _CSC):  # scipy < 1.8 wrote scipy.sparse.coo, later scipy.sparse._coo
        for module in (f"scipy.sparse.{stub.format}", f"scipy.sparse._{stub.format}"):
            table[(module, f"{stub.format}_matrix")] = stub
    for core in ("numpy.core", "numpy._core"):  # numpy < 2 wrote numpy.core
        table[(f"{core}.multiarray", "_reconstruct")] = _reconstruct  # an array, protocol <= 4
        table[(f"{core}.numeric", "_frombuffer")] = _frombuffer  # an array, protocol 5
        table[(f"{core}.multiarray", "scalar")] = _scalar
    table[("numpy", "ndarray")] = _Array  # the class _reconstruct is called with
    table[("numpy", "dtype")] = _DType
    return table


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise ForbiddenGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not supported")


def _check_memo(data: bytes) -> None:
    """Refuse memo indices beyond the number of opcodes before the C unpickler sizes its memo.

    A pickler numbers memo entries 0, 1, 2, ...; one flipped byte can turn an opcode into
    ``LONG_BINPUT`` with a 4-byte index, and the unpickler would allocate (and zero) a memo of
    that many slots (gigabytes). Walking the opcodes runs no code and allocates nothing large.
    """
    for count, (op, arg, _) in enumerate(pickletools.genops(data)):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= int(arg) <= count:
            raise pickle.UnpicklingError(f"memo index {arg} out of range")


def loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (allowed globals become stand-ins)."""
    _check_memo(data)
    return RestrictedUnpickler(io.BytesIO(data)).load()


def _index_array(value: Any, what: str) -> np.ndarray:
    array = value.array if isinstance(value, _Array) else None
    if array is None or array.ndim != 1 or array.dtype.kind not in "iu":
        raise MalformedSparse(f"{what} must be a 1-d integer array")
    return array


def _shape(value: Any) -> tuple[int, int]:
    if (not isinstance(value, tuple) or len(value) != 2
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) for d in value)):
        raise MalformedSparse(f"shape must be two integers, got {value!r:.60}")
    rows, cols = int(value[0]), int(value[1])
    if not (0 <= rows <= MAX_DIM and 0 <= cols <= MAX_DIM):
        raise MalformedSparse(f"shape {(rows, cols)} is negative or beyond {MAX_DIM}")
    return rows, cols


def _in_range(idx: np.ndarray, bound: int, what: str) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= bound):
        raise MalformedSparse(f"{what} index out of range [0, {bound})")


def load_sparse(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Checked ``(rows, cols, values, shape)`` of the 2-d scipy.sparse matrix pickled in ``data``.

    rows and cols are int64 and in range; values are bool, integer or real. A COO gives its
    ``coords`` (``row``/``col`` before scipy 1.13), a CSR/CSC its ``indptr``/``indices``, which
    must be consistent. Raises :class:`ForbiddenGlobal`, :class:`MalformedSparse`, or whatever
    the unpickler raises on bytes that are not a pickle.
    """
    obj = loads(data)
    if not isinstance(obj, _Sparse):
        got = "ndarray" if isinstance(obj, _Array) else "dtype" if isinstance(obj, _DType) else type(obj).__name__
        raise MalformedSparse(f"expected a scipy.sparse matrix, got {got}")
    state = obj.state or {}
    shape = _shape(state.get("_shape"))
    values = state.get("data")
    values = values.array if isinstance(values, _Array) else None
    if values is None or values.ndim != 1:
        raise MalformedSparse("values must be a 1-d numeric array")
    if obj.format == "coo":
        coords = state.get("coords", (state.get("row"), state.get("col")))
        if not isinstance(coords, tuple) or len(coords) != 2:
            raise MalformedSparse("expected a 2-d matrix (two coordinate arrays)")
        rows, cols = _index_array(coords[0], "row"), _index_array(coords[1], "col")
        if not len(rows) == len(cols) == len(values):
            raise MalformedSparse(f"row/col/data lengths differ ({len(rows)}, {len(cols)}, {len(values)})")
    else:  # csr / csc: compressed along rows / columns
        major = shape[0] if obj.format == "csr" else shape[1]
        indptr = _index_array(state.get("indptr"), "indptr").astype(np.int64)
        indices = _index_array(state.get("indices"), "indices")
        counts = np.diff(indptr)
        if (len(indptr) != major + 1 or indptr[0] != 0 or indptr[-1] != len(indices)
                or len(indices) != len(values) or np.any(counts < 0)):
            raise MalformedSparse("indptr/indices/data are inconsistent")
        rows, cols = np.repeat(np.arange(major, dtype=np.int64), counts), indices
        if obj.format == "csc":
            rows, cols = cols, rows
    _in_range(rows, shape[0], "row")
    _in_range(cols, shape[1], "column")
    return rows.astype(np.int64), cols.astype(np.int64), values, shape
