"""The optional CUDA build: is it here, and is there a device to run it on?

optbowl's optimizers take CUDA device arrays as they take NumPy arrays: anything with
``__cuda_array_interface__`` or a CUDA ``__dlpack__`` (CuPy arrays, torch CUDA tensors,
float32, float64, float16 or bfloat16), updated in place without copies by fused
multi-tensor kernels (one launch for up to 110 tensors and 2,048 chunks of 8,192 to 65,536
elements, sized so that every block the GPU keeps resident gets several; half and bfloat16
are computed in float32). Every rule with a CUDA kernel runs there with all its options
(:doc:`/optimizers` lists which have one); a rule without one, and SparseRows gradients,
are host-only and refuse device arrays with a TypeError that names the CUDA rules. State
lives on the same device;
``state_dict()`` returns host NumPy arrays and ``load_state_dict`` copies them back.
Kernels run on the parameters' current stream (torch's or CuPy's current stream), after
the work of every other array's producer (the DLPack stream protocol, stream events).

The build needs CUDA >= 12.1 (toolkit and driver: the kernels' argument block is over 4 KB)
and links the CUDA runtime statically, so the driver must support the CUDA major version
the module was built with (R580 or newer for CUDA 13); :func:`unavailable_reason` says
which of these is missing.

>>> import optbowl as ob
>>> isinstance(ob.cuda.is_available(), bool)
True
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

from . import _device

__all__ = [
    "LaunchPlan",
    "device_count",
    "is_available",
    "is_built",
    "launch_plan",
    "unavailable_reason",
]


def is_built() -> bool:
    """Whether this installation has the CUDA module ``optbowl._cuda``."""
    return _device._cuda is not None


def device_count() -> int:
    """Number of CUDA devices the CUDA module can use (0 without the module, a driver or a GPU)."""
    if _device._cuda is None:
        return 0
    return int(_device._cuda.status()[0])


def is_available() -> bool:
    """Whether device arrays can be stepped: the module is built and a device is present."""
    return device_count() > 0


def unavailable_reason() -> Optional[str]:
    """Why :func:`is_available` is False, in words, or None.

    One of: the module was not built (or failed to load); "no NVIDIA driver/GPU found";
    "driver too old: this build (CUDA X runtime) needs a driver for CUDA >= Y (NVIDIA driver
    >= N), the installed one supports CUDA Z"; "no CUDA GPU found"; GPU 0's architecture is
    not among the build's; or the CUDA runtime's own error.
    """
    return _device.unavailable_reason()


class LaunchPlan(NamedTuple):
    """How one step over one dtype's tensors is launched: kernel ``launches``, ``chunks``
    (the work unit of one block) over all launches, ``chunk_elems`` (elements per chunk)
    and ``blocks`` over all launches."""

    launches: int
    chunks: int
    chunk_elems: int
    blocks: int


def launch_plan(sizes: Sequence[int], sms: int = 0, blocks_per_sm: int = 2) -> LaunchPlan:
    """The launches one step takes for tensors of these lengths (one dtype) on a GPU with
    ``sms`` multiprocessors keeping ``blocks_per_sm`` blocks of 512 threads each (2 for
    float32, float16 and bfloat16 kernels, 1 for float64); ``sms=0``: not sized to a device
    (chunks of 65,536 elements).

    The chunk length is the longest power of two from 65,536 down to 8,192 elements that
    gives at least 4 chunks per resident block; a launch takes up to 110 tensors and 2,048
    chunks, and as many blocks as are resident (fewer when it has fewer chunks). Needs the
    CUDA module but no device.

    >>> import optbowl as ob
    >>> ob.cuda.launch_plan([1 << 20], sms=132)  # doctest: +SKIP
    LaunchPlan(launches=1, chunks=128, chunk_elems=8192, blocks=128)

    (1 M float32 elements on an H100: 132 SMs; skipped as a doctest, as it needs the CUDA
    module.)
    """
    if _device._cuda is None:
        raise RuntimeError(_device.unavailable_reason())
    if int(sms) < 0 or int(blocks_per_sm) < 1:
        raise ValueError(f"sms, blocks_per_sm: expected >= 0 and >= 1, got {sms}, {blocks_per_sm}")
    return LaunchPlan(*_device._cuda.plan([int(n) for n in sizes], int(sms) * int(blocks_per_sm)))
