"""Device arrays without a GPU: classification, views, checks, the host/device mix error.

A fake producer that exposes ``__cuda_array_interface__`` stands for a CuPy array or a
torch CUDA tensor; nothing here touches device memory.
"""

import numpy as np
import pytest

import optbowl as ob
from optbowl import _device


class FakeDeviceArray:
    """Exposes the CUDA array interface (v3) of a pretend allocation."""

    _next = 1 << 40

    def __init__(self, shape, typestr="<f4", *, ptr=None, strides=None, readonly=False, device=0):
        itemsize = int(typestr[-1])
        n = int(np.prod(shape, dtype=np.int64))
        if ptr is None:
            ptr = FakeDeviceArray._next
            FakeDeviceArray._next += max(n * itemsize, 1) + 256
        self.shape = tuple(shape)
        self._device = device
        self.__cuda_array_interface__ = {
            "shape": self.shape,
            "typestr": typestr,
            "data": (ptr, readonly),
            "version": 3,
            "strides": strides,
            "stream": None,
        }

    def __dlpack_device__(self):
        return (2, self._device)


class FakeDLPackOnly:
    """A CUDA DLPack producer without the array interface (as torch bfloat16 tensors)."""

    def __dlpack_device__(self):
        return (2, 0)


class FakeHostDLPack:
    def __dlpack_device__(self):
        return (1, 0)


def test_classification():
    assert _device.is_device_array(FakeDeviceArray((3,)))
    assert _device.is_device_array(FakeDLPackOnly())
    assert not _device.is_device_array(np.zeros(3))
    assert not _device.is_device_array(np.float32(1.0))
    assert not _device.is_device_array(FakeHostDLPack())
    assert not _device.is_device_array([1.0, 2.0])
    assert not _device.is_device_array(None)


def test_torch_cpu_tensors_are_not_device_arrays():
    torch = pytest.importorskip("torch")
    assert not _device.is_device_array(torch.zeros(3))
    assert not _device.is_device_array(torch.zeros(3, requires_grad=True))
    assert not _device.is_device_array(torch.zeros(3, dtype=torch.bfloat16))


@pytest.mark.parametrize(
    "typestr, dtype", [("<f4", "float32"), ("<f8", "float64"), ("<f2", "float16")]
)
def test_describe_reads_the_array_interface(typestr, dtype):
    a = FakeDeviceArray((4, 5), typestr, device=0)
    v = _device.describe(a, "params[0]")
    assert v.shape == (4, 5) and v.dtype == dtype and v.device == 0 and not v.readonly
    assert v.ptr == a.__cuda_array_interface__["data"][0]
    assert v.size == 20 and v.nbytes == 20 * int(typestr[-1])


def test_describe_accepts_c_contiguous_strides_and_refuses_others():
    ok = FakeDeviceArray((4, 5), strides=(20, 4))
    assert _device.describe(ok, "x").shape == (4, 5)
    ones = FakeDeviceArray((1, 5), strides=(999, 4))  # a size-1 dimension's stride is free
    assert _device.describe(ones, "x").shape == (1, 5)
    with pytest.raises(ValueError, match=r"grads\[2\]: must be C-contiguous"):
        _device.describe(FakeDeviceArray((4, 5), strides=(4, 16)), "grads[2]")


def test_describe_refuses_other_dtypes_and_host_arrays():
    with pytest.raises(
        TypeError, match=r"params\[1\]: expected a float32, float64, float16 or bfloat16"
    ):
        _device.describe(FakeDeviceArray((3,), "<i4"), "params[1]")
    with pytest.raises(TypeError, match=r"grads\[0\]: a host NumPy array"):
        _device.describe(np.zeros(3, np.float32), "grads[0]")
    with pytest.raises(TypeError, match=r"x: expected a CUDA device array"):
        _device.describe(FakeHostDLPack(), "x")


def test_mixing_host_and_device_arrays_is_a_type_error():
    host = np.zeros(3, np.float32)
    with pytest.raises(
        TypeError, match=r"params\[1\] is a CUDA device array but params\[0\] is a ndarray"
    ):
        ob.Rprop([host, FakeDeviceArray((3,))])
    with pytest.raises(TypeError, match="must all be host NumPy arrays or all CUDA device arrays"):
        ob.Adagrad([FakeDeviceArray((3,)), host])
    opt = ob.Rprop([host])
    with pytest.raises(TypeError, match="CUDA device array"):
        opt.add_param_group({"params": [FakeDeviceArray((2,))]})
    assert len(opt.param_groups) == 1 and len(opt._params) == 1


@pytest.mark.skipif(
    ob.cuda.is_available(), reason="checks the error raised when no CUDA device can be used"
)
def test_device_arrays_without_a_usable_device_raise_a_clear_error():
    with pytest.raises(
        RuntimeError,
        match=r"params\[0\]: a CUDA device array, but (no usable CUDA device|optbowl was built without)",
    ):
        ob.Rprop([FakeDeviceArray((3,))])
    with pytest.raises(RuntimeError, match="CUDA device array"):
        ob.Adagrad(FakeDeviceArray((3,)))


def test_host_found_inf_skips_the_step():
    x = np.array([1.0, 2.0])
    opt = ob.Rprop(x, lr=0.1)
    opt.step(np.ones(2), found_inf=True)
    np.testing.assert_array_equal(x, [1.0, 2.0])
    assert opt.state == {}
    opt.step(np.ones(2), found_inf=np.array([0.0], np.float32))
    np.testing.assert_allclose(x, [0.9, 1.9])
    assert opt.state[0]["step"] == 1
    opt.step(np.ones(2), found_inf=np.float32(np.inf))
    np.testing.assert_allclose(x, [0.9, 1.9])
    assert opt.state[0]["step"] == 1

    y = np.array([1.0])
    ada = ob.Adagrad(y, lr=0.5)
    ada.step(np.ones(1), found_inf=1)
    assert y[0] == 1.0 and ada.state == {}


def test_found_inf_errors():
    opt = ob.Rprop(np.zeros(2))
    with pytest.raises(
        TypeError, match="found_inf: a CUDA device array, but the parameters are host"
    ):
        opt.step(np.ones(2), found_inf=FakeDeviceArray((1,)))
    with pytest.raises(TypeError, match="found_inf: expected a bool"):
        opt.step(np.ones(2), found_inf=np.zeros(3))
    with pytest.raises(TypeError, match="found_inf"):
        opt.step(np.ones(2), found_inf="yes")
    assert opt.state == {}


def _params(n=3, shape=(4,), typestr="<f4"):
    return [FakeDeviceArray(shape, typestr) for _ in range(n)]


def test_gather_checks_before_any_launch():
    params, grads, sums = _params(), _params(), _params()
    ptrs, sizes, dtypes = _device._gather(
        [
            ("params", params, True),
            ("grads", grads, False),
            ("sums", sums, True),
            ("none", None, True),
        ],
        0,
    )
    assert sizes == [4, 4, 4] and dtypes == ["float32"] * 3 and ptrs[3] is None
    assert ptrs[1] == [g.__cuda_array_interface__["data"][0] for g in grads]

    with pytest.raises(
        TypeError, match=r"grads\[1\]: dtype float64 does not match params\[1\] \(float32\)"
    ):
        _device._gather(
            [
                ("params", params, True),
                ("grads", [grads[0], FakeDeviceArray((4,), "<f8"), grads[2]], False),
            ],
            0,
        )
    with pytest.raises(
        ValueError, match=r"grads\[0\]: shape \(5,\) does not match params\[0\] \(4,\)"
    ):
        _device._gather(
            [("params", params, True), ("grads", [FakeDeviceArray((5,))] + grads[1:], False)], 0
        )
    with pytest.raises(ValueError, match=r"grads\[2\]: on CUDA device 1"):
        _device._gather(
            [
                ("params", params, True),
                ("grads", grads[:2] + [FakeDeviceArray((4,), device=1)], False),
            ],
            0,
        )
    with pytest.raises(TypeError, match=r"grads\[0\]: a host NumPy array"):
        _device._gather(
            [("params", params, True), ("grads", [np.zeros(4, np.float32)] + grads[1:], False)], 0
        )
    with pytest.raises(ValueError, match=r"grads: expected 3 arrays"):
        _device._gather([("params", params, True), ("grads", grads[:2], False)], 0)
    readonly = FakeDeviceArray((4,), readonly=True)
    with pytest.raises(ValueError, match=r"sums\[0\]: is read-only"):
        _device._gather([("params", params, True), ("sums", [readonly] + sums[1:], True)], 0)
    _device._gather([("params", params, True), ("grads", [readonly] + grads[1:], False)], 0)


def test_gather_refuses_shared_memory():
    params = _params()
    base = params[1].__cuda_array_interface__["data"][0]
    alias = FakeDeviceArray((4,), ptr=base + 8)  # overlaps params[1]
    with pytest.raises(ValueError, match=r"shares memory with params\[1\]"):
        _device._gather(
            [("params", params, True), ("grads", [_params(1)[0], alias, _params(1)[0]], False)], 0
        )
    with pytest.raises(ValueError, match="shares memory"):
        _device._gather([("params", params, True), ("grads", params, False)], 0)


def test_bfloat16_host_conversion_rounds_to_nearest_even():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            rng.standard_normal(10_000).astype(np.float32),
            np.array(
                [0.0, -0.0, np.inf, -np.inf, 1e-40, 3.3895314e38, 1.00390625, 1.01171875],
                np.float32,
            ),
        ]
    )
    bits = _device._to_storage(x, "bfloat16")
    expected = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(bits, expected)
    back = _device._from_storage(bits, "bfloat16")
    np.testing.assert_array_equal(back, torch.from_numpy(x).to(torch.bfloat16).float().numpy())
    assert np.isnan(
        _device._from_storage(
            _device._to_storage(np.array([np.nan], np.float32), "bfloat16"), "bfloat16"
        )[0]
    )


@pytest.mark.skipif(not ob.cuda.is_built(), reason="optbowl was built without its CUDA module")
def test_dlpack_reader_on_host_capsules():
    from optbowl import _cuda

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    info = _cuda.dlpack_info(a.__dlpack__())
    assert info["device_type"] == 1 and info["device_id"] == 0
    assert info["data"] == a.ctypes.data
    assert info["shape"] == (3, 4) and (info["code"], info["bits"], info["lanes"]) == (2, 32, 1)
    assert info["strides"] in (None, (4, 1))
    torch = pytest.importorskip("torch")
    t = torch.zeros(5, dtype=torch.bfloat16)
    info = _cuda.dlpack_info(t.__dlpack__())
    assert (info["code"], info["bits"]) == (4, 16) and info["data"] == t.data_ptr()
    with pytest.raises(TypeError, match="capsule"):
        _cuda.dlpack_info(1)


def test_numel_and_repr_work_for_device_arrays():
    assert _device.numel(FakeDeviceArray((3, 4))) == 12
    assert _device.numel(np.zeros((2, 2))) == 4


def test_host_state_copies_are_numpy():
    a = np.ones(3)
    c = _device.host_copy(a)
    assert c is not a and np.array_equal(c, a)
    assert _device.host_copy(7) == 7


def test_state_views_are_remembered_while_the_array_lives():
    import gc

    a = FakeDeviceArray((3,))
    first = a.__cuda_array_interface__["data"][0]
    _device._remember_state(a)
    a.__cuda_array_interface__ = dict(a.__cuda_array_interface__, data=(first + 4096, False))
    assert _device.describe(a, "state").ptr == first  # the optimizer's own view
    key = id(a)
    del a
    gc.collect()
    assert key not in _device._STATE_VIEWS
