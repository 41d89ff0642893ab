"""The optional CUDA build: is it here, and is there a device to run it on?

optbowl's optimizers take CUDA device arrays as they take NumPy arrays: anything with
``__cuda_array_interface__`` or a CUDA ``__dlpack__`` (CuPy arrays, torch CUDA tensors,
float32, float64, float16 or bfloat16), updated in place without copies by fused
multi-tensor kernels (one launch for up to 110 tensors and 1,024 chunks of 65,536
elements; half and bfloat16 are computed in float32). The rules on the device are Rprop
(every variant), Adagrad (dense gradients), SGD (momentum, dampening, Nesterov), RMSprop
(centered, momentum), Adam (amsgrad) and AdamW; QuickProp and SparseRows gradients are
host-only and refuse device arrays with a TypeError. State lives on the same device;
``state_dict()`` returns host NumPy arrays and ``load_state_dict`` copies them back.
Kernels run on the parameters' current stream (torch's or CuPy's current stream).

>>> import optbowl as ob
>>> isinstance(ob.cuda.is_available(), bool)
True
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from . import _device

__all__ = ["device_count", "is_available", "is_built", "launch_plan", "unavailable_reason"]


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
    """Why :func:`is_available` is False (the CUDA runtime's own error), or None."""
    return _device.unavailable_reason()


def launch_plan(sizes: Sequence[int]) -> Tuple[int, int]:
    """(kernel launches, chunks) one step takes for tensors of these lengths and one dtype.

    Needs the CUDA module but no device. A ResNet-18 list (62 tensors, 11.7 M elements)
    is one launch.
    """
    if _device._cuda is None:
        raise RuntimeError(_device.unavailable_reason())
    return tuple(_device._cuda.plan([int(n) for n in sizes]))  # type: ignore[return-value]
