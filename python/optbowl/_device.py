"""CUDA device arrays under the optimizers: classification, views, state, copies, launches.

An optimizer's arrays are either all host NumPy arrays (run by ``optbowl._core``) or all
CUDA device arrays on one device (run by ``optbowl._cuda``). A device array is anything
that exposes ``__cuda_array_interface__`` (CuPy, Numba, torch CUDA tensors) or
``__dlpack__`` with a CUDA ``__dlpack_device__`` (torch bfloat16 tensors, JAX); it is
used in place, never copied. The rules whose registry entry claims the ``cuda`` layer
have device kernels (:class:`CudaBackend` calls them); the others and SparseRows
gradients are host-only. State arrays are made by the
parameter's own library (``torch.full_like``, ``cupy.full_like``) or, for other
producers, as :class:`DeviceArray`.

Kernels run on the parameters' current stream: ``torch.cuda.current_stream()`` for torch
tensors, ``cupy.cuda.get_current_stream()`` for CuPy arrays, the ``stream`` entry of
``__cuda_array_interface__`` otherwise (the legacy default stream when there is none), so
a step is ordered after the work that produced the gradients, as a library's own op is.
Every other array's producer is ordered before the launch too: a DLPack producer is given
that stream (``__dlpack__(stream=...)``, the DLPack protocol: the producer makes it wait
for its own work), and an array of another library, or whose ``__cuda_array_interface__``
names another stream, has that stream's work waited for (an event, no host sync).
"""

from __future__ import annotations

import importlib.util
import weakref
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import _registry

try:  # the optional CUDA module; absent when built with OPTBOWL_CUDA=OFF or without nvcc
    from . import _cuda  # type: ignore[attr-defined]
except ImportError as error:  # pragma: no cover - depends on the build
    _cuda = None
    try:
        present = importlib.util.find_spec(f"{__package__}._cuda") is not None
    except (ImportError, ValueError):
        present = False
    #: Why a built _cuda failed to load (None when it was not built at all).
    CUDA_IMPORT_ERROR: Optional[str] = str(error) if present else None
else:
    CUDA_IMPORT_ERROR = None

#: DLPack device types that are CUDA device memory (kDLCUDA, kDLCUDAManaged).
DLPACK_CUDA_TYPES = (2, 13)
_CAI_DTYPES = {"<f4": "float32", "<f8": "float64", "<f2": "float16"}
_DLPACK_DTYPES = {(2, 32): "float32", (2, 64): "float64", (2, 16): "float16", (4, 16): "bfloat16"}
_ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
#: NumPy dtype a device dtype appears as on the host (NumPy has no bfloat16: float32, exact).
HOST_DTYPES: Dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(np.float32),
}


class DeviceView(NamedTuple):
    """What a kernel needs to know about one device array."""

    ptr: int
    shape: Tuple[int, ...]
    dtype: str  # "float32", "float64", "float16" or "bfloat16"
    device: int
    readonly: bool

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * _ITEMSIZE[self.dtype]


# ---------------------------------------------------------------------- classification
def _library(x: Any) -> str:
    return type(x).__module__.split(".")[0]


def _dlpack_device(x: Any) -> Optional[Tuple[int, int]]:
    method = getattr(x, "__dlpack_device__", None)
    if method is None:
        return None
    try:
        kind, ordinal = method()
    except Exception:  # a producer that cannot say where it lives is not a device array
        return None
    return int(kind), int(ordinal)


def _cai(x: Any) -> Optional[Dict[str, Any]]:
    if _library(x) == "torch":
        x = x.detach()  # torch refuses the interface on tensors that require grad
    try:
        cai = getattr(x, "__cuda_array_interface__", None)
    except Exception:  # e.g. a dtype the interface cannot express (torch bfloat16)
        return None
    return cai if isinstance(cai, dict) else None


def is_device_array(x: Any) -> bool:
    """Whether ``x`` is a CUDA device array (``__cuda_array_interface__`` or CUDA DLPack)."""
    if isinstance(x, (np.ndarray, np.generic)) or x is None:
        return False
    if isinstance(x, DeviceArray):
        return True
    if _library(x) == "torch":
        import torch

        if isinstance(x, torch.Tensor):
            return bool(x.is_cuda)
    if _cai(x) is not None:  # a class property (CuPy, Numba) or an instance attribute
        return True
    where = _dlpack_device(x)
    return where is not None and where[0] in DLPACK_CUDA_TYPES


def _c_contiguous(shape: Sequence[int], strides: Optional[Sequence[int]], itemsize: int) -> bool:
    if strides is None:
        return True
    expected = itemsize
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def describe(x: Any, who: str, stream: Optional[int] = None) -> DeviceView:
    """The pointer, shape, dtype and device of a device array, or a TypeError/ValueError
    naming ``who`` (not a device array, an unsupported dtype, not C-contiguous).

    ``stream``: the stream that will use the array (a DLPack producer is asked to order its
    work before it); None only reads the description."""
    if isinstance(x, DeviceArray):
        return x.view
    owned = _STATE_VIEWS.get(id(x))
    if owned is not None and owned[0]() is x:
        return owned[1]
    if isinstance(x, np.ndarray):
        raise TypeError(
            f"{who}: a host NumPy array, but this optimizer's parameters are CUDA device arrays; "
            "move it to the same device"
        )
    if _library(x) == "torch":
        view = _torch_view(x, who)
        if view is not None:
            return view
    cai = _cai(x)
    if cai is not None:
        typestr = cai["typestr"]
        dtype = _CAI_DTYPES.get(typestr)
        if dtype is None:
            raise TypeError(
                f"{who}: expected a float32, float64, float16 or bfloat16 device array, "
                f"got typestr {typestr!r}"
            )
        shape = tuple(int(n) for n in cai["shape"])
        if not _c_contiguous(shape, cai.get("strides"), _ITEMSIZE[dtype]):
            raise ValueError(f"{who}: must be C-contiguous")
        ptr, readonly = cai["data"]
        where = _dlpack_device(x)
        device = where[1] if where is not None else _pointer_device(ptr, who)
        return DeviceView(int(ptr), shape, dtype, device, bool(readonly))
    where = _dlpack_device(x)
    if where is None or where[0] not in DLPACK_CUDA_TYPES:
        raise TypeError(
            f"{who}: expected a CUDA device array (__cuda_array_interface__ or __dlpack__), "
            f"got {type(x).__name__}"
        )
    info = dlpack_info(x, who, stream)
    dtype = _DLPACK_DTYPES.get((info["code"], info["bits"])) if info["lanes"] == 1 else None
    if dtype is None:
        raise TypeError(
            f"{who}: expected a float32, float64, float16 or bfloat16 device array, got DLPack "
            f"dtype (code {info['code']}, bits {info['bits']}, lanes {info['lanes']})"
        )
    shape = tuple(int(n) for n in info["shape"])
    strides = info["strides"]
    if strides is not None and not _c_contiguous(
        shape, [s * _ITEMSIZE[dtype] for s in strides], _ITEMSIZE[dtype]
    ):
        raise ValueError(f"{who}: must be C-contiguous")
    return DeviceView(int(info["data"]), shape, dtype, int(info["device_id"]), False)


_TORCH_DTYPES: Dict[Any, str] = {}


def _torch_view(t: Any, who: str) -> Optional[DeviceView]:
    """Fast path for torch CUDA tensors (a step reads a view of every array)."""
    import torch

    if not isinstance(t, torch.Tensor) or not t.is_cuda:
        return None
    if not _TORCH_DTYPES:
        _TORCH_DTYPES.update(
            {
                torch.float32: "float32",
                torch.float64: "float64",
                torch.float16: "float16",
                torch.bfloat16: "bfloat16",
            }
        )
    dtype = _TORCH_DTYPES.get(t.dtype)
    if dtype is None:
        raise TypeError(
            f"{who}: expected a float32, float64, float16 or bfloat16 device array, got {t.dtype}"
        )
    if not t.is_contiguous():
        raise ValueError(f"{who}: must be C-contiguous")
    return DeviceView(int(t.data_ptr()), tuple(t.shape), dtype, int(t.device.index), False)


def dlpack_stream(stream: Optional[int]) -> int:
    """The ``stream`` argument of ``__dlpack__`` for a consumer on ``stream`` (DLPack's CUDA
    convention: -1 no synchronisation, 1 the legacy default stream, 2 the per-thread default
    stream, other values a stream handle; 0 is not allowed)."""
    if stream is None:
        return -1
    return 1 if stream == 0 else int(stream)


def dlpack_info(x: Any, who: str, stream: Optional[int] = None) -> Dict[str, Any]:
    """Read a DLPack capsule's description without consuming it (needs ``_cuda``). With a
    ``stream``, the producer orders its pending work on the array before that stream (the
    DLPack stream protocol); without one, nothing is synchronised."""
    _require_cuda(who)
    try:
        capsule = x.__dlpack__(stream=dlpack_stream(stream))
    except TypeError:  # a producer without the stream argument (DLPack before 0.6)
        capsule = x.__dlpack__()
    return _cuda.dlpack_info(capsule)


def _pointer_device(ptr: int, who: str) -> int:  # pragma: no cover - needs a GPU
    _require_cuda(who)
    return int(_cuda.pointer_device(ptr))


# ---------------------------------------------------------------------- availability
def unavailable_reason() -> Optional[str]:
    """None when CUDA arrays can be stepped, else why not."""
    if _cuda is None:
        if CUDA_IMPORT_ERROR is not None:
            return f"optbowl's CUDA module optbowl._cuda failed to load ({CUDA_IMPORT_ERROR})"
        return (
            "optbowl was built without its CUDA module optbowl._cuda; reinstall with a CUDA "
            "compiler (nvcc) on PATH and OPTBOWL_CUDA=AUTO or ON"
        )
    count, name, message = _cuda.status()
    runtime = _cuda.runtime_version()
    driver = _cuda.driver_version()
    needs = required_driver(runtime)
    if count == 0:
        if driver == 0:
            return (
                "no NVIDIA driver/GPU found (the CUDA driver library could not be loaded; "
                f"the CUDA runtime says {name or 'nothing'})"
            )
        if driver < needs or name == "cudaErrorInsufficientDriver":
            return (
                f"driver too old: this build (CUDA {_version(runtime)} runtime) needs a driver "
                f"for CUDA >= {_version(needs)} ({_driver_branch(needs)}), the installed one "
                f"supports CUDA {_version(driver)}"
            )
        if name == "cudaErrorNoDevice":
            return f"no CUDA GPU found (the NVIDIA driver for CUDA {_version(driver)} sees none)"
        return f"no usable CUDA device ({name}: {message})" if name else "no CUDA device"
    if driver < needs:
        return (
            f"driver too old: this build needs a driver for CUDA >= {_version(needs)} "
            f"({_driver_branch(needs)}; kernel arguments over 4 KB), the installed one supports "
            f"CUDA {_version(driver)}"
        )
    problem = _kernel_problem(0)
    if problem:
        major, minor = _cuda.compute_capability(0)
        archs = getattr(_cuda, "architectures", "?")
        return (
            f"GPU 0 ({_cuda.device_name(0)}, compute capability {major}.{minor}) cannot run this "
            f"build's kernels (built for CUDA architectures {archs}: {problem})"
        )
    return None


#: CUDA version -> the first Linux driver branch that supports it.
_DRIVER_BRANCHES = {12000: 525, 12010: 530, 12020: 535, 12030: 545, 12040: 550, 12050: 555,
                    12060: 560, 12080: 570, 12090: 575, 13000: 580}


def required_driver(runtime: int) -> int:
    """The CUDA version a driver must support for a build on CUDA runtime ``runtime``: the
    runtime's major version (a static runtime of major M needs a driver of CUDA M.0 or
    newer), and at least 12.1 (the kernels' argument block is over 4 KB)."""
    return max(12010, runtime // 1000 * 1000)


def _version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def _driver_branch(v: int) -> str:
    branch = _DRIVER_BRANCHES.get(v)
    return f"NVIDIA driver >= {branch}" if branch else "a newer NVIDIA driver"


_KERNEL_PROBLEMS: Dict[int, str] = {}


def _kernel_problem(device: int) -> str:
    """Whether this build's kernels load on ``device`` (asked once per device)."""
    if device not in _KERNEL_PROBLEMS:
        _KERNEL_PROBLEMS[device] = str(_cuda.kernel_image_problem(device))
    return _KERNEL_PROBLEMS[device]


def _require_cuda(who: str) -> None:
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"{who}: a CUDA device array, but {reason}")


# ---------------------------------------------------------------------- placement
class Placement(NamedTuple):
    """Where an optimizer's arrays live: one CUDA device."""

    device: int


def place(
    name: str, existing: Sequence[Any], new: Sequence[Any], placement: Optional[Placement]
) -> Optional[Placement]:
    """Classify ``new`` parameters (numbered after ``existing``) as host or device.

    Returns None for host arrays (the caller checks them as NumPy arrays), the device
    placement for device arrays after checking them all; a mix is a TypeError.
    """
    every = list(existing) + list(new)
    kinds = [is_device_array(a) for a in every]
    if any(kinds) and not all(kinds):
        host = kinds.index(False)
        dev = kinds.index(True)
        raise TypeError(
            f"{name}: {name}[{dev}] is a CUDA device array but {name}[{host}] is a "
            f"{type(every[host]).__name__}; one optimizer's arrays must all be host NumPy "
            "arrays or all CUDA device arrays on one device"
        )
    if not any(kinds):
        return None
    start = len(existing)
    _require_cuda(f"{name}[{start}]")
    views = [describe(a, f"{name}[{i}]") for i, a in enumerate(every)]
    device = views[0].device if placement is None else placement.device
    for i, v in enumerate(views):
        if v.device != device:
            raise ValueError(
                f"{name}[{i}]: on CUDA device {v.device}, but {name}[0] is on device {device}"
            )
        if v.readonly:
            raise ValueError(f"{name}[{i}]: is read-only")
    _no_overlap([(name, i, v) for i, v in enumerate(views)])
    return Placement(device)


def _no_overlap(entries: List[Tuple[str, int, DeviceView]]) -> None:
    """Refuse device arrays whose memory ranges overlap.

    Sorted by start, a range overlaps an earlier one iff it starts before the running
    maximum of the earlier ends (vectorised; the offender and the range that reaches it
    are named).
    """
    named = [(name, i, v) for name, i, v in entries if v.nbytes]
    if len(named) < 2:
        return
    starts = np.array([v.ptr for _, _, v in named], dtype=np.uint64)
    ends = starts + np.array([v.nbytes for _, _, v in named], dtype=np.uint64)
    order = np.argsort(starts, kind="stable")
    reach = np.maximum.accumulate(ends[order])
    clashes = np.flatnonzero(starts[order][1:] < reach[:-1])
    if clashes.size:
        j = int(clashes[0]) + 1
        later = named[order[j]]
        earlier = named[order[int(np.argmax(ends[order][:j]))]]
        raise ValueError(
            f"{later[0]}[{later[1]}] shares memory with {earlier[0]}[{earlier[1]}]; "
            "every array must be a separate buffer"
        )


def numel(a: Any) -> int:
    """Number of elements of a host or device array."""
    if isinstance(a, np.ndarray):
        return int(a.size)
    return describe(a, "array").size


# ---------------------------------------------------------------------- state and copies
class DeviceArray:
    """A C-contiguous device allocation of optbowl's own, for producers without a
    ``full_like`` (exposes ``__cuda_array_interface__``; bfloat16 only through optbowl)."""

    def __init__(self, shape: Tuple[int, ...], dtype: str, device: int) -> None:
        self._buffer = _cuda.DeviceBuffer(
            int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE[dtype], device
        )
        self.view = DeviceView(self._buffer.ptr, tuple(shape), dtype, device, False)
        self.shape = self.view.shape
        self.dtype = dtype

    @property
    def __cuda_array_interface__(self) -> Dict[str, Any]:
        if self.dtype == "bfloat16":
            raise TypeError("__cuda_array_interface__ cannot express bfloat16")
        typestr = {v: k for k, v in _CAI_DTYPES.items()}[self.dtype]
        return {
            "shape": self.shape,
            "typestr": typestr,
            "data": (self.view.ptr, False),
            "version": 3,
            "strides": None,
            "stream": None,
        }

    def __dlpack_device__(self) -> Tuple[int, int]:
        return (2, self.view.device)

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, device={self.view.device})"


def _device_of(x: Any, who: str) -> int:
    """The device of a device array, without asking a DLPack producer for its data."""
    where = _dlpack_device(x)
    if where is not None and where[0] in DLPACK_CUDA_TYPES:
        return where[1]
    return describe(x, who).device


def current_stream(x: Any, device: int) -> int:
    """The stream handle work on ``x`` goes to (see the module docstring)."""
    library = _library(x)
    if library == "torch":
        import torch

        return int(torch.cuda.current_stream(device).cuda_stream)
    if library == "cupy":
        import cupy  # type: ignore[import-not-found]

        with cupy.cuda.Device(device):
            return int(cupy.cuda.get_current_stream().ptr)
    cai = _cai(x) if not isinstance(x, DeviceArray) else None
    stream = cai.get("stream") if cai else None
    return int(stream) if stream else 0


def _to_storage(host: np.ndarray, dtype: str) -> np.ndarray:
    """Host values in the device dtype's bytes (bfloat16 rounded to nearest even)."""
    if dtype != "bfloat16":
        return np.ascontiguousarray(host, dtype=HOST_DTYPES[dtype])
    bits = np.ascontiguousarray(host, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(host)
    out = rounded.astype(np.uint16)
    out[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)  # keep NaN a (quiet) NaN
    return out


def _from_storage(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype != "bfloat16":
        return raw
    return (raw.astype(np.uint32) << 16).view(np.float32)


def to_host(x: Any, who: str = "array") -> np.ndarray:
    """A host NumPy copy of a device array (bfloat16 as float32, exactly)."""
    stream = current_stream(x, _device_of(x, who))
    v = describe(x, who, stream)
    raw = np.empty(v.shape, np.uint16 if v.dtype == "bfloat16" else HOST_DTYPES[v.dtype])
    _cuda.copy(raw.ctypes.data, v.ptr, v.nbytes, v.device, stream)
    return _from_storage(raw, v.dtype)


def copy_into(x: Any, host: np.ndarray, who: str = "array") -> None:
    """Copy host values into the device array ``x`` (same shape)."""
    stream = current_stream(x, _device_of(x, who))
    v = describe(x, who, stream)
    data = _to_storage(np.asarray(host), v.dtype)
    if data.shape != v.shape:
        raise ValueError(f"{who}: shape {data.shape} does not match {v.shape}")
    _cuda.copy(v.ptr, data.ctypes.data, v.nbytes, v.device, stream)


#: Views of the state arrays full_like made (id -> (weak reference, view)): an optimizer
#: owns its state, so a step need not ask the producer for their pointers again.
_STATE_VIEWS: Dict[int, Tuple[Any, DeviceView]] = {}


def _remember_state(out: Any) -> None:
    key = id(out)

    def forget(_: Any) -> None:
        _STATE_VIEWS.pop(key, None)

    _STATE_VIEWS[key] = (weakref.ref(out, forget), describe(out, "state"))


#: Bytes of the cache line within which a state array starts where its parameter does.
_LINE = 64


def host_full_like(p: np.ndarray, value: float, dtype: Any = None) -> np.ndarray:
    """An array shaped like ``p`` (of ``dtype``, else ``p``'s) with ``p``'s memory layout
    (C-contiguous for a C-contiguous ``p``; for a dense ``p`` in another axis order, its
    strides in elements, as ``np.empty_like`` keeps them), filled with ``value`` (for a
    complex dtype: its real view, each part ``value``, as torch fills a complex state),
    whose element that starts ``p``'s first 64-byte cache line starts one too (for ``p``'s
    dtype: the same offset within a line as ``p``).

    The compiled loops start their vector loops where ``p`` starts a cache line; arrays
    placed so are then read and written in whole lines, and an array at another offset
    crosses a line with every 512-bit access (on AMD Zen 5, a three-state AVX-512 step over 2M
    float32 elements took 1.18-1.23x the time when its states were not at ``p``'s offset).
    NumPy starts large arrays 16 bytes into a page, and others anywhere on 16 bytes.
    """
    dt = np.dtype(p.dtype if dtype is None else dtype)
    nbytes = p.size * dt.itemsize
    buf = np.empty(nbytes + _LINE, np.uint8)
    to_line = -p.ctypes.data % _LINE  # bytes from p's start to its first line
    if to_line % p.itemsize == 0:
        shift = (-(to_line // p.itemsize) * dt.itemsize - buf.ctypes.data) % _LINE
    else:  # p is not aligned to its dtype (the loops refuse it): any place will do
        shift = -buf.ctypes.data % dt.itemsize
    if p.flags.c_contiguous:
        out = buf[shift : shift + nbytes].view(dt).reshape(p.shape)
    else:  # p's axes from the outermost in memory to the innermost
        order = sorted(range(p.ndim), key=lambda k: -p.strides[k])
        out = buf[shift : shift + nbytes].view(dt).reshape([p.shape[k] for k in order])
        out = out.transpose(np.argsort(order))
    out.fill(complex(value, value) if dt.kind == "c" else value)
    return out


def full_like(p: Any, value: float) -> Any:
    """An array shaped and typed like ``p``, on its device, filled with ``value`` (a NumPy
    one by :func:`host_full_like`)."""
    if isinstance(p, np.ndarray):
        return host_full_like(p, value)
    library = _library(p)
    out: Any
    if library == "torch":
        import torch

        out = torch.full_like(p.detach(), value)
    elif library == "cupy":
        import cupy  # type: ignore[import-not-found]

        out = cupy.full_like(p, value)
    else:
        v = describe(p, "params")
        out = DeviceArray(v.shape, v.dtype, v.device)
        copy_into(out, np.full(v.shape, value, dtype=np.float64))
        return out
    _remember_state(out)
    return out


def host_copy(value: Any) -> Any:
    """state_dict's copy of one state entry: arrays as host NumPy arrays."""
    if isinstance(value, np.ndarray):
        return value.copy(order="K")  # in the state's own memory layout
    if is_device_array(value):
        return to_host(value, "state")
    return value


def load_like(who: str, value: Any, ref: Any) -> Any:
    """load_state_dict's check-and-copy of a saved array into ``ref`` (a fresh device array)."""
    v = describe(ref, who)
    host = np.asarray(value)
    if host.shape != v.shape:
        raise ValueError(f"{who}: shape {host.shape} does not match the parameter's {v.shape}")
    if host.dtype != HOST_DTYPES[v.dtype]:
        raise TypeError(
            f"{who}: dtype {host.dtype} does not match the parameter's {HOST_DTYPES[v.dtype]}"
        )
    copy_into(ref, host, who)
    return ref


# ---------------------------------------------------------------------- found_inf
def skip_flag(found_inf: Any, placement: Optional[Placement]) -> Tuple[bool, Optional[DeviceView]]:
    """(skip now, device flag): a host flag decides at once; a device flag (one float32 on
    the parameters' device) is read by the kernels."""
    if found_inf is None:
        return False, None
    if is_device_array(found_inf):
        if placement is None:
            raise TypeError(
                "found_inf: a CUDA device array, but the parameters are host NumPy arrays"
            )
        v = describe(found_inf, "found_inf")
        if v.dtype != "float32" or v.size != 1 or v.device != placement.device:
            raise ValueError(
                f"found_inf: expected one float32 element on CUDA device {placement.device}, "
                f"got {v.size} {v.dtype} element(s) on device {v.device}"
            )
        return False, v
    flag = np.asarray(found_inf)
    if flag.size != 1 or flag.dtype.kind not in "biuf":
        raise TypeError(
            "found_inf: expected a bool, a number or a one-element array, "
            f"got {type(found_inf).__name__}"
        )
    return bool(flag.reshape(()) != 0), None


def read_flag(found_inf: Any) -> bool:
    """The value of a device found_inf flag (waits for its stream)."""
    return bool(to_host(found_inf, "found_inf").reshape(()) != 0)


# ---------------------------------------------------------------------- launches
def producer_stream(x: Any, device: int, stream: int, lead: str) -> Optional[int]:
    """The stream whose pending work on ``x`` a launch on ``stream`` must wait for, or None
    (the same stream; optbowl's own arrays; DLPack producers, which the protocol orders).
    ``lead``: the library of the parameters, whose current stream ``stream`` is."""
    if isinstance(x, DeviceArray) or id(x) in _STATE_VIEWS:
        return None
    library = _library(x)
    if library in ("torch", "cupy"):
        if library == lead:
            return None
        other = current_stream(x, device)
        return other if other != stream else None
    cai = _cai(x)
    if cai is None:
        return None  # a DLPack producer: ordered by __dlpack__(stream=...)
    named = cai.get("stream")
    return int(named) if named and int(named) != stream else None


def _gather(
    operands: Sequence[Tuple[str, Any, bool]], device: int, stream: Optional[int] = None,
    lead: str = "",
) -> Tuple[List[Optional[List[int]]], List[int], List[str], List[int]]:
    """Validate lists of device arrays (dtype, shape, device, writeability, no shared
    memory) and return their pointers, lengths and dtypes, and the producer streams a
    launch on ``stream`` must wait for (none without a stream); nothing is written."""
    name0, first, _ = operands[0]
    producers: List[int] = []
    n = len(first)
    pointers: List[Optional[List[int]]] = []
    entries: List[Tuple[str, int, DeviceView]] = []
    ref: List[DeviceView] = []
    for k, (name, arrays, writable) in enumerate(operands):
        if arrays is None:
            pointers.append(None)
            continue
        if len(arrays) != n:
            raise ValueError(
                f"{name}: expected {n} arrays (one per entry of {name0}), got {len(arrays)}"
            )
        column = []
        for i, a in enumerate(arrays):
            who = f"{name}[{i}]"
            v = describe(a, who, stream)
            if stream is not None:
                other = producer_stream(a, device, stream, lead)
                if other is not None and other not in producers:
                    producers.append(other)
            if k == 0:
                ref.append(v)
            else:
                if v.dtype != ref[i].dtype:
                    raise TypeError(
                        f"{who}: dtype {v.dtype} does not match {name0}[{i}] ({ref[i].dtype})"
                    )
                if v.shape != ref[i].shape:
                    raise ValueError(
                        f"{who}: shape {v.shape} does not match {name0}[{i}] {ref[i].shape}"
                    )
            if v.device != device:
                raise ValueError(
                    f"{who}: on CUDA device {v.device}, but the parameters are on device {device}"
                )
            if writable and v.readonly:
                raise ValueError(f"{who}: is read-only")
            column.append(v.ptr)
            entries.append((name, i, v))
        pointers.append(column)
    _no_overlap(entries)
    return pointers, [v.size for v in ref], [v.dtype for v in ref], producers


def _launch_args(
    operands: Sequence[Tuple[str, Any, bool]], found_inf: Optional[DeviceView]
) -> tuple:
    """Checked pointer lists, lengths and dtypes, then device, stream and flag pointer; the
    stream is made to wait for every other producer stream first."""
    params = operands[0][1]
    device = _device_of(params[0], "params[0]")
    stream = current_stream(params[0], device)
    ptrs, sizes, dtypes, producers = _gather(operands, device, stream, _library(params[0]))
    if producers:
        _cuda.wait_streams(stream, producers, device)
    flag = found_inf.ptr if found_inf is not None else 0
    return ptrs, sizes, dtypes, (device, stream, flag)


def _unread_as_none(
    ptrs: List[Optional[List[int]]], read: Dict[int, bool]
) -> List[Optional[List[int]]]:
    """Pass the optional state lists that no group reads as None: the kernels then neither
    load nor store them (``read``: slot -> whether some group uses it)."""
    return [None if not read.get(k, True) else p for k, p in enumerate(ptrs)]


SPARSE_HOST_ONLY = (
    "SparseRows gradients are host-only (NumPy parameters and arrays); CUDA device "
    "parameters take dense device gradients"
)


def host_only_sparse(grads: Sequence[Any]) -> None:
    """Refuse SparseRows gradients for device parameters (the sparse kernel is host-only)."""
    from .sparse import SparseRows

    for i, g in enumerate(grads):
        if isinstance(g, SparseRows):
            raise TypeError(f"grads[{i}]: {SPARSE_HOST_ONLY}")


def host_only(name: str, optimizer: str, arrays: Sequence[Any], start: int = 0) -> None:
    """Refuse device arrays for an optimizer that has no CUDA kernel (``arrays`` are
    numbered from ``start``)."""
    for i, a in enumerate(arrays, start):
        if is_device_array(a):
            raise TypeError(
                f"{name}[{i}]: a CUDA device array, but {optimizer} is host-only (NumPy "
                f"arrays); the CUDA rules are {_registry.prose(_registry.classes('cuda'))}"
            )


def _scalar_view(x: Any, who: str, device: int) -> DeviceView:
    """One float32 element on ``device`` (a GradScaler's scale or found_inf)."""
    v = describe(x, who)
    if v.dtype != "float32" or v.size != 1 or v.device != device:
        raise ValueError(
            f"{who}: expected one float32 element on CUDA device {device}, "
            f"got {v.size} {v.dtype} element(s) on device {v.device}"
        )
    return v


def device_steps(counters: Sequence[Any], device: int) -> Tuple[List[int], List[str]]:
    """Pointers and dtypes of device step counters (one float32 or float64 element each)."""
    ptrs, dtypes = [], []
    for i, c in enumerate(counters):
        v = describe(c, f"steps[{i}]")
        if v.dtype not in ("float32", "float64") or v.size != 1 or v.device != device:
            raise ValueError(
                f"steps[{i}]: expected one float32 or float64 element on CUDA device {device}, "
                f"got {v.size} {v.dtype} element(s) on device {v.device}"
            )
        ptrs.append(v.ptr)
        dtypes.append(v.dtype)
    return ptrs, dtypes


def _launch(
    kernel: str,
    lists: Sequence[Tuple[str, Any]],
    rest: Sequence[Any],
    found_inf: Optional[DeviceView],
    read: Optional[Dict[int, bool]] = None,
    lead: Sequence[Any] = (),
    grad_scale: Any = None,
    counters: Optional[Sequence[Any]] = None,
) -> None:
    """Check the arrays and run ``_cuda.<kernel>(*lead, *pointer lists, sizes, dtypes,
    *rest, device, stream, found_inf[, grad_scale=..., step_ptrs=..., step_dtypes=...])``.
    ``lists``: (name, arrays) in the kernel's order, params first and the read-only grads
    second; ``read``: see :func:`_unread_as_none`; ``grad_scale``: a device scalar every
    gradient is divided by (and written back unscaled); ``counters``: device step counters
    read by the kernel instead of the host step counts in ``rest``."""
    operands = [(name, arrays, k != 1 or grad_scale is not None) for k, (name, arrays) in
                enumerate(lists)]
    ptrs, sizes, dtypes, where = _launch_args(operands, found_inf)
    if read:
        ptrs = _unread_as_none(ptrs, read)
    extra: Dict[str, Any] = {}
    if grad_scale is not None:
        extra["grad_scale"] = _scalar_view(grad_scale, "grad_scale", where[0]).ptr
    if counters is not None:
        extra["step_ptrs"], extra["step_dtypes"] = device_steps(counters, where[0])
    CudaBackend.last_launch = getattr(_cuda, kernel)(
        *lead, *ptrs, sizes, dtypes, *rest, *where, **extra
    )


class CudaBackend:
    """The CUDA twin of ``optbowl._core``: the same step functions over device arrays.

    One function per rule whose registry entry claims the ``cuda`` layer, named as the
    rule and taking the host call's arguments (``fn(*lead, params, grads, *state lists,
    [steps], groups, group_sizes, *tail, found_inf=None, grad_scale=None)``); the entry's
    :class:`optbowl._registry.CudaCall` says what differs on the device."""

    #: (kernel launches, chunks) of the last step, for tests and benchmarks.
    last_launch: Tuple[int, int] = (0, 0)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        for rule in _registry.rules("cuda"):
            if rule.name == name:
                launcher = _rule_launcher(rule)
                self.__dict__[name] = launcher
                return launcher
        raise AttributeError(f"{type(self).__name__!r} has no rule {name!r}")


def _rule_launcher(rule: Any) -> Any:
    """The device step of ``rule``: its arguments sorted into the kernel's lists and rest."""
    cuda = rule.cuda
    n_lead = 1 if cuda.lead is not None else 0
    n_fixed = n_lead + 2 + rule.width + (1 if rule.counts_steps else 0) + 2
    tails = cuda.tail

    def launch(*args: Any, found_inf: Any = None, grad_scale: Any = None, **kw: Any) -> None:
        unknown = set(kw) - {name for name, _ in tails}
        if unknown or len(args) < n_fixed or len(args) > n_fixed + len(tails):
            raise TypeError(f"{rule.name}: expected {n_fixed} arguments and "
                            f"{', '.join(n for n, _ in tails) or 'no others'}")
        lead = cuda.lead(args[:n_lead]) if cuda.lead is not None else ()
        params, grads = args[n_lead], args[n_lead + 1]
        states = args[n_lead + 2:n_lead + 2 + rule.width]
        rest = list(args[n_lead + 2 + rule.width:])
        for name, default in tails[len(args) - n_fixed:]:  # those not given by position
            rest.append(kw.get(name, default))
        if cuda.dense_only:
            host_only_sparse(grads)
        lists = [("params", params), ("grads", grads), *zip(rule.operands, states)]
        counters = None
        if rule.counts_steps and cuda.device_steps:
            rest[0], counters = _split_steps(rest[0])
        groups = rest[1] if rule.counts_steps else rest[0]
        read = {slot: reads(groups) for slot, reads in cuda.reads} or None
        _launch(rule.name, lists, tuple(rest), found_inf, read, lead=lead,
                grad_scale=grad_scale, counters=counters)

    launch.__name__ = launch.__qualname__ = rule.name
    return launch


def _split_steps(steps: Sequence[Any]) -> Tuple[List[float], Optional[List[Any]]]:
    """Host step counts, or device step counters (torch's fused optimizers keep them on the
    device; the kernels read count + 1 there): (host counts, None) or (zeros, counters)."""
    if not any(is_device_array(s) for s in steps):
        return [float(s) for s in steps], None
    if all(is_device_array(s) for s in steps):
        return [0.0] * len(steps), list(steps)
    raise TypeError(
        "steps: expected all host step counts or all device step counters, got a mix"
    )


CUDA_BACKEND = CudaBackend()
