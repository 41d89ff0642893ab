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


def test_an_instance_attribute_interface_is_a_device_array(fake_cuda):
    """A producer that offers the interface as an instance attribute and nothing else."""

    class InterfaceOnly:
        pass

    x = InterfaceOnly()
    x.__cuda_array_interface__ = FakeDeviceArray((3,)).__cuda_array_interface__
    assert _device.is_device_array(x)
    assert _device.describe(x, "x").shape == (3,)


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
    reason = ob.cuda.unavailable_reason()  # in words: no driver, no GPU, not built, ...
    if reason is None:
        pytest.skip("a usable CUDA device is present")
    with pytest.raises(RuntimeError) as raised:
        ob.Rprop([FakeDeviceArray((3,))])
    assert str(raised.value) == f"params[0]: a CUDA device array, but {reason}"
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
    ptrs, sizes, dtypes, producers = _device._gather(
        [
            ("params", params, True),
            ("grads", grads, False),
            ("sums", sums, True),
            ("none", None, True),
        ],
        0,
    )
    assert sizes == [4, 4, 4] and dtypes == ["float32"] * 3 and ptrs[3] is None
    assert producers == []  # no stream given: nothing to order
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


# ------------------------------------------------------------------ a fake CUDA module
# The arrays below are "device" arrays whose memory is host memory, and FakeCuda stands for
# optbowl._cuda: its kernels run optbowl._core on those bytes. The whole host side of a
# device step (state made on the device, the launch arguments, dropped lists, found_inf,
# state_dict to NumPy and back) then runs, and must match the host optimizer bit for bit.
import ctypes  # noqa: E402

from optbowl import _core  # noqa: E402


class HostBackedDevice:
    """A device array (by its interfaces) whose bytes are a host array's."""

    def __init__(self, host):
        self.host = np.ascontiguousarray(host)
        self.shape = self.host.shape
        self.__cuda_array_interface__ = {
            "shape": self.shape,
            "typestr": self.host.dtype.str,
            "data": (self.host.ctypes.data, False),
            "version": 3,
            "strides": None,
            "stream": None,
        }

    def __dlpack_device__(self):
        return (2, 0)


def _at(ptr, n, dtype):
    dtype = np.dtype(dtype)
    return np.frombuffer((ctypes.c_char * (n * dtype.itemsize)).from_address(ptr), dtype=dtype)


class FakeCuda:
    """optbowl._cuda's interface over host memory; records every kernel call, and every
    stream wait. Kernels honour found_inf, grad_scale (gradients divided and written back)
    and device step counters (count + 1) as the CUDA kernels do."""

    def __init__(self):
        self.calls = []
        self.waits = []

    def status(self):
        return (1, "", "")

    def runtime_version(self):
        return 13000

    def driver_version(self):
        return 13000

    def kernel_image_problem(self, device):
        return ""

    def pointer_device(self, ptr):
        return 0

    def wait_streams(self, consumer, producers, device):
        self.waits.append((consumer, list(producers), device))

    class DeviceBuffer:
        def __init__(self, nbytes, device):
            self._mem = np.zeros(max(int(nbytes), 1), np.uint8)
            self.ptr, self.nbytes, self.device = self._mem.ctypes.data, int(nbytes), device

    def copy(self, dst, src, nbytes, device, stream):
        ctypes.memmove(dst, src, nbytes)

    def _run(self, name, lists, sizes, dtypes, found_inf, call, grad_scale=0, step_ptrs=None,
             step_dtypes=None, steps=None):
        self.calls.append((name, [p is None for p in lists], sizes, dtypes))
        if found_inf and _at(found_inf, 1, np.float32)[0] != 0:
            return (1, 0)
        views = [
            None if ptrs is None else [_at(p, n, d) for p, n, d in zip(ptrs, sizes, dtypes)]
            for ptrs in lists
        ]
        if grad_scale:
            scale = _at(grad_scale, 1, np.float32)[0]
            for g in views[1]:
                g[...] = g / g.dtype.type(scale)
        if step_ptrs is not None:
            steps[:] = [float(_at(p, 1, d)[0]) + 1.0 for p, d in zip(step_ptrs, step_dtypes)]
        call(*views)
        return (1, len(sizes))

    def sgd(self, p, g, b, sizes, dtypes, steps, groups, gs, device, stream, found_inf=0,
            **extra):
        run = lambda *v: _core.sgd(*v, steps, groups, gs)  # noqa: E731
        return self._run("sgd", [p, g, b], sizes, dtypes, found_inf, run, **extra)

    def rmsprop(self, p, g, sq, ga, b, sizes, dtypes, groups, gs, device, stream, found_inf=0,
                **extra):
        run = lambda *v: _core.rmsprop(*v, groups, gs)  # noqa: E731
        return self._run("rmsprop", [p, g, sq, ga, b], sizes, dtypes, found_inf, run, **extra)

    def adam(self, p, g, m, v, vmax, sizes, dtypes, steps, groups, gs, device, stream,
             found_inf=0, **extra):
        steps = list(steps)
        run = lambda *a: _core.adam(*a, steps, groups, gs)  # noqa: E731
        return self._run("adam", [p, g, m, v, vmax], sizes, dtypes, found_inf, run,
                         steps=steps, **extra)

    def adagrad(self, p, g, s, sizes, dtypes, steps, groups, gs, device, stream, found_inf=0,
                **extra):
        steps = list(steps)
        run = lambda *a: _core.adagrad(*a, steps, groups, gs)  # noqa: E731
        return self._run("adagrad", [p, g, s], sizes, dtypes, found_inf, run, steps=steps,
                         **extra)


@pytest.fixture
def fake_cuda(monkeypatch):
    fake = FakeCuda()
    monkeypatch.setattr(_device, "_cuda", fake)
    monkeypatch.setattr(_device.CudaBackend, "last_launch", (0, 0))
    return fake


CASES = {
    "sgd-plain": (ob.SGD, dict(lr=0.1)),
    "sgd-momentum": (ob.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd-nesterov": (ob.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, maximize=True)),
    "rmsprop-plain": (ob.RMSprop, dict(lr=0.01)),
    "rmsprop-centered-momentum": (
        ob.RMSprop,
        dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, weight_decay=0.1),
    ),
    "adam": (ob.Adam, dict(lr=0.01, weight_decay=0.1)),
    "adam-amsgrad": (ob.Adam, dict(lr=0.01, betas=(0.8, 0.99), amsgrad=True, maximize=True)),
    "adamw": (ob.AdamW, dict(lr=0.01, weight_decay=0.5)),
}
#: Which optional lists reach the kernel (True: passed as None) for each case.
DROPPED = {
    "sgd-plain": [False, False, True],
    "sgd-momentum": [False, False, False],
    "sgd-nesterov": [False, False, False],
    "rmsprop-plain": [False, False, False, True, True],
    "rmsprop-centered-momentum": [False] * 5,
    "adam": [False, False, False, False, True],
    "adam-amsgrad": [False] * 5,
    "adamw": [False, False, False, False, True],
}
SHAPES = [(7,), (3, 5), ()]


def _grads(rng, dtype):
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_device_step_state_dict_and_reload_match_the_host(fake_cuda, rng, case, dtype):
    cls, hp = CASES[case]
    host = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    dev = [HostBackedDevice(h.copy()) for h in host]
    # two groups, the second with its own lr, as the kernels index groups per tensor
    cpu = cls([{"params": host[:2]}, {"params": host[2:], "lr": hp["lr"] / 2}], **hp)
    gpu = cls([{"params": dev[:2]}, {"params": dev[2:], "lr": hp["lr"] / 2}], **hp)
    for _ in range(4):
        grads = _grads(rng, dtype)
        cpu.step(grads)
        gpu.step([HostBackedDevice(g) for g in grads])
    for h, d in zip(host, dev):
        np.testing.assert_array_equal(h, d.host)
    name, dropped, sizes, dtypes = fake_cuda.calls[-1]
    assert name == case.split("-")[0].replace("adamw", "adam")
    assert dropped == DROPPED[case]
    assert sizes == [int(np.prod(s)) for s in SHAPES] and dtypes == [np.dtype(dtype).name] * 3
    assert _device.CudaBackend.last_launch == (1, 3)

    state = gpu.state_dict()
    for i, st in state["state"].items():
        assert st["step"] == 4
        for key, value in st.items():
            if key != "step":
                assert isinstance(gpu.state[i][key], _device.DeviceArray)
                assert isinstance(value, np.ndarray) and value.dtype == dtype
                np.testing.assert_array_equal(value, cpu.state[i][key])

    again = [HostBackedDevice(h.copy()) for h in host]
    reloaded = cls([{"params": again[:2]}, {"params": again[2:], "lr": hp["lr"] / 2}], **hp)
    reloaded.load_state_dict(state)
    assert isinstance(reloaded.state[0][cls._state_names[0]], _device.DeviceArray)
    grads = _grads(rng, dtype)
    cpu.step(grads)
    reloaded.step([HostBackedDevice(g) for g in grads])
    for h, d in zip(host, again):
        np.testing.assert_array_equal(h, d.host)


@pytest.mark.parametrize("cls", [ob.SGD, ob.RMSprop, ob.Adam, ob.AdamW])
def test_device_found_inf_is_passed_to_the_kernel(fake_cuda, cls):
    x = np.array([1.0, -2.0], np.float32)
    p = HostBackedDevice(x.copy())
    opt = cls(p, lr=0.1)
    flag = HostBackedDevice(np.ones(1, np.float32))
    opt.step(HostBackedDevice(np.ones(2, np.float32)), found_inf=flag)
    np.testing.assert_array_equal(p.host, x)
    assert opt.state == {} and len(fake_cuda.calls) == 1
    flag.host[0] = 0.0
    opt.step(HostBackedDevice(np.ones(2, np.float32)), found_inf=flag)
    assert not np.array_equal(p.host, x) and opt.state[0]["step"] == 1
    with pytest.raises(ValueError, match="found_inf: expected one float32 element"):
        opt.step(HostBackedDevice(np.ones(2, np.float32)), found_inf=HostBackedDevice(np.ones(2)))


@pytest.mark.parametrize("cls", [ob.SGD, ob.RMSprop, ob.Adam, ob.AdamW])
def test_device_parameters_refuse_host_arrays(fake_cuda, cls):
    p = HostBackedDevice(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="must all be host NumPy arrays or all CUDA device"):
        cls([p, np.zeros(3, np.float32)], lr=0.1)
    opt = cls(p, lr=0.1)
    with pytest.raises(TypeError, match=r"grads\[0\]: a host NumPy array"):
        opt.step(np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"grads\[0\]: dtype float64 does not match"):
        opt.step(HostBackedDevice(np.ones(3)))
    state = cls(np.zeros(3, np.float32), lr=0.1)
    state.step(np.ones(3, np.float32))
    sd = state.state_dict()
    key = cls._state_names[0]
    sd["state"][0][key] = np.zeros(3, np.float64)
    opt.load_state_dict(state.state_dict())  # host arrays load onto the device
    with pytest.raises(TypeError, match=rf"\['{key}'\]: dtype float64 does not match"):
        opt.load_state_dict(sd)
    assert not fake_cuda.calls and not p.host.any()


@pytest.mark.parametrize("cls", [ob.SGD, ob.RMSprop, ob.Adam])
def test_new_rules_on_device_arrays_without_a_usable_device(cls):
    if ob.cuda.is_available():
        pytest.skip("checks the error raised when no CUDA device can be used")
    with pytest.raises(RuntimeError, match=r"params\[0\]: a CUDA device array, but"):
        cls([FakeDeviceArray((3,))], lr=0.1)


def test_quickprop_is_host_only():
    with pytest.raises(
        TypeError, match=r"params\[1\]: a CUDA device array, but QuickProp is host-only"
    ):
        ob.QuickProp([np.zeros(2), FakeDeviceArray((3,))])
    with pytest.raises(TypeError, match=r"params\[0\]: .*QuickProp is host-only"):
        ob.QuickProp(FakeDeviceArray((3,)))
    x = np.zeros(2)
    opt = ob.QuickProp(x, lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\]: .*QuickProp is host-only"):
        opt.add_param_group({"params": iter([FakeDeviceArray((2,))])})
    assert len(opt.param_groups) == 1 and len(opt._params) == 1
    opt.add_param_group({"params": iter([np.zeros(3)])})  # an iterator of host arrays is fine
    assert len(opt._params) == 2


def test_sparse_rows_are_host_only(fake_cuda):
    with pytest.raises(
        TypeError, match="values: a CUDA device array, but SparseRows gradients are host-only"
    ):
        ob.SparseRows([0], FakeDeviceArray((1, 3)))
    with pytest.raises(TypeError, match="indices: a CUDA device array, but SparseRows"):
        ob.SparseRows(FakeDeviceArray((1,)), np.zeros((1, 3)))
    p = HostBackedDevice(np.ones((4, 3), np.float32))
    opt = ob.Adagrad(p, lr=0.5)
    with pytest.raises(TypeError, match=r"grads\[0\]: SparseRows gradients are host-only"):
        opt.step([ob.SparseRows([1], np.ones((1, 3), np.float32))])
    assert opt.state == {} and not fake_cuda.calls and (p.host == 1).all()


class HostDLPackDevice:
    """A DLPack-only "device" producer over host memory that records the stream each
    ``__dlpack__`` call is given."""

    def __init__(self, host):
        self.host = np.ascontiguousarray(host)
        self.streams = []

    def __dlpack__(self, stream=None, **kw):
        self.streams.append(stream)
        return self.host.__dlpack__()

    def __dlpack_device__(self):
        return (2, 0)


def _fake_dlpack_info(capsule):
    class Capsule:
        def __dlpack__(self, **kw):
            return capsule

        def __dlpack_device__(self):
            return (1, 0)

    a = np.from_dlpack(Capsule())
    code = {"f": 2}[a.dtype.kind]
    return {"data": a.ctypes.data, "device_type": 2, "device_id": 0, "shape": a.shape,
            "strides": None, "code": code, "bits": a.dtype.itemsize * 8, "lanes": 1}


@pytest.mark.parametrize("stream, given", [(None, 1), (7, 7)])
def test_dlpack_producers_get_the_launch_stream(fake_cuda, monkeypatch, stream, given):
    """The DLPack stream protocol: each producer is handed the stream the kernel runs on
    (the legacy default stream as 1), so it can order its pending work before it; a
    description read outside a step asks for no synchronisation (-1)."""
    monkeypatch.setattr(fake_cuda, "dlpack_info", _fake_dlpack_info, raising=False)
    p = HostBackedDevice(np.zeros(4, np.float32))
    p.__cuda_array_interface__["stream"] = stream
    g = HostDLPackDevice(np.ones(4, np.float32))
    opt = ob.SGD(p, lr=0.5)
    opt.step(g)
    np.testing.assert_array_equal(p.host, -0.5)
    assert g.streams == [given]
    assert not fake_cuda.waits
    _device.describe(g, "grads[0]")
    assert g.streams == [given, -1]


def test_producers_of_other_libraries_or_streams_are_waited_for(fake_cuda):
    p = HostBackedDevice(np.zeros(4, np.float32))
    p.__cuda_array_interface__["stream"] = 7
    g = HostBackedDevice(np.ones(4, np.float32))
    g.__cuda_array_interface__["stream"] = 9
    opt = ob.Adagrad(p, lr=0.5)
    opt.step(g)
    assert fake_cuda.waits == [(7, [9], 0)]  # before the launch, on the parameters' device
    fake_cuda.waits.clear()
    g.__cuda_array_interface__["stream"] = 7
    opt.step(g)
    assert fake_cuda.waits == []
