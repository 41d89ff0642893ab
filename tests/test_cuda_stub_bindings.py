"""The CUDA module's binding layer without a GPU: cpp/cuda/bindings.cpp built against host
stubs of the kernels and of the runtime calls (cpp/cuda/cuda_stub.cpp), with the host
compiler alone, and driven through the Python path.

The stub's "device memory" is host memory and its launchers walk the kernels' launch plan
(launch.hpp), running each chunk through the CPU loop of the same rule, with found_inf,
grad_scale and device step counters honoured as the kernels honour them. So every entry of
the module returns (or raises) through the real binding code on every run: its tuple made
with the GIL held after a launch without it, its argument checks, the C++ errors a launch
throws. The launch plan is checked for real devices' SM counts, and
``optbowl.cuda.unavailable_reason()`` for a missing driver, an old driver, no GPU and an
unsupported architecture (the stub's pretend device is set by environment variables).

The build (two translation units, -O0, in parallel) takes about 10 s of CPU time; it runs
where the sources, a C++ compiler and pybind11 are (not from an installed wheel).
"""

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import numpy as np
import pytest

import optbowl as ob
from optbowl import _core, _device, _registry

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "cpp" / "cuda" / "bindings.cpp", ROOT / "cpp" / "cuda" / "cuda_stub.cpp"]


def _compiler():
    for candidate in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if candidate and shutil.which(candidate.split()[0]):
            return candidate.split()
    return None


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    """optbowl._cuda built against the host stubs, loaded as a module of its own."""
    if not all(p.is_file() for p in SOURCES):
        pytest.skip("needs the source tree (the tests run outside it)")
    pybind11 = pytest.importorskip("pybind11")
    cxx = _compiler()
    if cxx is None:
        pytest.skip("no C++ compiler")
    out = tmp_path_factory.mktemp("cuda_stub")
    flags = [
        "-std=c++17", "-O0", "-fPIC", "-ffp-contract=off", "-DOPTBOWL_CUDA_HOST_STUB",
        f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}",
        f"-I{ROOT / 'cpp' / 'include'}", f"-I{ROOT / 'cpp' / 'cuda'}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    jobs = [
        subprocess.Popen([*cxx, *flags, "-c", str(src), "-o", str(out / f"{src.stem}.o")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for src in SOURCES
    ]
    for job in jobs:
        log, _ = job.communicate(timeout=900)
        assert job.returncode == 0, log
    module = out / f"_cuda{sysconfig.get_config_var('EXT_SUFFIX')}"
    link = subprocess.run([*cxx, "-shared", *(str(out / f"{s.stem}.o") for s in SOURCES), "-o",
                           str(module)], capture_output=True, text=True, env=env, timeout=300)
    assert link.returncode == 0, link.stdout + link.stderr
    spec = importlib.util.spec_from_file_location("optbowl_cuda_stub._cuda", module)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.host_stub is True
    return mod


@pytest.fixture
def on_stub(stub, monkeypatch):
    """optbowl's device path running on the stub module."""
    monkeypatch.setattr(_device, "_cuda", stub)
    monkeypatch.setattr(_device, "_KERNEL_PROBLEMS", {})
    monkeypatch.setattr(_device.CudaBackend, "last_launch", (0, 0))
    for name in ("OPTBOWL_CUDA_STUB_DRIVER", "OPTBOWL_CUDA_STUB_DEVICES", "OPTBOWL_CUDA_STUB_CC"):
        monkeypatch.delenv(name, raising=False)
    return stub


class HostBacked:
    """A device array (by its interface) whose bytes are a host array's."""

    def __init__(self, host, stream=None):
        self.host = np.ascontiguousarray(host)
        self.__cuda_array_interface__ = {
            "shape": self.host.shape,
            "typestr": self.host.dtype.str,
            "data": (self.host.ctypes.data, False),
            "version": 3,
            "strides": None,
            "stream": stream,
        }

    def __dlpack_device__(self):
        return (2, 0)


# ------------------------------------------------------------------ entries, return paths
def _ptrs(arrays):
    return [a.ctypes.data for a in arrays]


def _direct_call(stub, rule, n=5, dtype=np.float32):
    """One entry called with host pointers; returns the result and the arrays."""
    arrays = [np.full(n, 0.5, dtype) for _ in range(5)]
    arrays[1][:] = 1.0  # the gradient
    common = dict(sizes=[n], dtypes=[np.dtype(dtype).name], group_sizes=[1], device=0, stream=0)
    if rule == "rprop":
        out = stub.rprop(0, *map(lambda a: [a.ctypes.data], arrays[:4]), None,
                         groups=[(0.5, 1.2, 1e-6, 50.0, False)], loss_increased=True, **common)
    elif rule == "adagrad":
        out = stub.adagrad(*[_ptrs([a]) for a in arrays[:3]], steps=[1.0],
                           groups=[(0.1, 0.0, 0.0, 1e-10, False)], **common)
    elif rule == "sgd":
        out = stub.sgd(*[_ptrs([a]) for a in arrays[:3]], steps=[1.0],
                       groups=[(0.1, 0.9, 0.0, 0.0, False, False)], **common)
    elif rule == "rmsprop":
        out = stub.rmsprop(*[_ptrs([a]) for a in arrays[:5]],
                           groups=[(0.01, 0.99, 1e-8, 0.0, 0.5, True, False)], **common)
    else:
        out = stub.adam(*[_ptrs([a]) for a in arrays[:5]], steps=[1.0],
                        groups=[(1e-3, 0.9, 0.999, 1e-8, 0.0, True, False, False)], **common)
    return out, arrays


RULES = list(_registry.names("cuda"))


@pytest.mark.parametrize("rule", RULES)
def test_every_entry_returns_its_launch_statistics(stub, rule):
    """The result tuple is made with the GIL held (it was not: every device step crashed)."""
    out, arrays = _direct_call(stub, rule)
    assert out == (1, 1, 8192, 1)  # one launch of one chunk (the chunk length of a small list)
    assert arrays[0][0] != 0.5  # the parameter moved
    assert (arrays[1] == 1.0).all()  # the gradient is read only


def test_a_step_returns_in_a_fresh_interpreter(stub):
    """In a subprocess, so that the crash the GIL bug caused is a failure, not the end of
    the test run."""
    code = f"""
import importlib.util, numpy as np
spec = importlib.util.spec_from_file_location("stub._cuda", {stub.__file__!r})
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
p, g = np.ones(4, np.float32), np.ones(4, np.float32)
out = m.sgd([p.ctypes.data], [g.ctypes.data], None, [4], ["float32"], [1.0],
            [(0.5, 0.0, 0.0, 0.0, False, False)], [1], 0, 0)
print(out, p.tolist())
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stdout.strip() == "(1, 1, 8192, 1) [0.5, 0.5, 0.5, 0.5]"


@pytest.mark.parametrize("rule", RULES)
def test_entries_run_from_many_threads(stub, rule):
    """Each launch releases the GIL and takes it back to build its result."""
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(_direct_call(stub, rule)[0])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [(1, 1, 8192, 1)] * 80


def test_errors_thrown_during_a_launch_reach_python(stub):
    p = np.zeros(4, np.float16)
    with pytest.raises(ValueError, match="dtypes: the host stub computes float32 and float64"):
        stub.sgd([p.ctypes.data], [p.ctypes.data + 8], None, [4], ["float16"], [1.0],
                 [(0.1, 0.0, 0.0, 0.0, False, False)], [1], 0, 0)
    x = np.zeros(4, np.float32)
    with pytest.raises(RuntimeError, match="cudaErrorInvalidDevice"):
        stub.sgd([x.ctypes.data], [x.ctypes.data + 64], None, [4], ["float32"], [1.0],
                 [(0.1, 0.0, 0.0, 0.0, False, False)], [1], 3, 0)
    with pytest.raises(ValueError, match="step_ptrs: expected one step counter per tensor"):
        stub.adagrad([1], [2], [3], [4], ["float32"], [1.0], [(0.1, 0.0, 0.0, 1e-10, False)],
                     [1], 0, 0, step_ptrs=[1, 2], step_dtypes=["float32", "float32"])
    with pytest.raises(ValueError, match="step_ptrs, step_dtypes: give both or neither"):
        stub.adam([1], [2], [3], [4], None, [4], ["float32"], [1.0],
                  [(1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, False)], [1], 0, 0, step_ptrs=[1])
    with pytest.raises(TypeError, match="step_dtypes: expected float32 or float64"):
        stub.adam([1], [2], [3], [4], None, [4], ["float32"], [1.0],
                  [(1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, False)], [1], 0, 0,
                  step_ptrs=[8], step_dtypes=["int32"])
    assert (x == 0).all()


@pytest.mark.parametrize(
    "rule, changes, error, message",
    [
        ("sgd", dict(momentum_buffers=None), ValueError, "momentum_buffers: momentum != 0 needs"),
        ("sgd", dict(grads=None), TypeError, "grads: expected a list of pointers, got None"),
        ("sgd", dict(steps=[1.0, 2.0]), ValueError, "steps: expected one step count per tensor"),
        ("rmsprop", dict(grad_avgs=None), ValueError, "grad_avgs: centered=True needs"),
        ("rmsprop", dict(group_sizes=[2]), ValueError, "group_sizes: they do not add up"),
        ("adam", dict(max_exp_avg_sqs=None), ValueError, "max_exp_avg_sqs: amsgrad=True needs"),
        ("adam", dict(dtypes=["int32"]), TypeError, "dtypes: expected float32, float64"),
        ("adam", dict(sizes=[-1]), ValueError, "sizes: entries must be >= 0"),
    ],
)
def test_argument_errors(stub, rule, changes, error, message):
    lists = {
        "sgd": ["params", "grads", "momentum_buffers"],
        "rmsprop": ["params", "grads", "square_avgs", "grad_avgs", "momentum_buffers"],
        "adam": ["params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"],
    }[rule]
    group = {
        "sgd": (0.1, 0.9, 0.0, 0.0, False, False),
        "rmsprop": (0.01, 0.99, 1e-8, 0.0, 0.5, True, False),
        "adam": (1e-3, 0.9, 0.999, 1e-8, 0.0, True, False, False),
    }[rule]
    kw = {name: [4096 * (k + 1)] for k, name in enumerate(lists)}
    kw.update(sizes=[4], dtypes=["float32"], groups=[group], group_sizes=[1], device=0, stream=0)
    if rule != "rmsprop":
        kw["steps"] = [1.0]
    kw.update(changes)
    with pytest.raises(error, match=message):
        getattr(stub, rule)(**kw)


def test_runtime_entries(stub):
    assert stub.status() == (1, "", "")
    assert stub.runtime_version() == 13000 and stub.driver_version() == 13000
    assert stub.device_name(0) == "optbowl host stub" and stub.sm_count(0) == 4
    assert stub.compute_capability(0) == (9, 0) and stub.kernel_image_problem(0) == ""
    buf = stub.DeviceBuffer(64, 0)
    assert buf.nbytes == 64 and buf.device == 0 and buf.ptr != 0
    src = np.arange(16, dtype=np.float32)
    stub.copy(buf.ptr, src.ctypes.data, 64, 0, 0)
    back = np.zeros(16, np.float32)
    stub.copy(back.ctypes.data, buf.ptr, 64, 0, 0)
    np.testing.assert_array_equal(back, src)
    stub.wait_streams(5, [6, 7], 0)
    with pytest.raises(ValueError, match="nbytes"):
        stub.DeviceBuffer(-1, 0)
    with pytest.raises(RuntimeError, match="invalid device"):
        stub.device_name(2)
    with pytest.raises(ValueError, match="not CUDA device memory"):
        stub.pointer_device(0)


# ------------------------------------------------------------------ the Python path
CASES = {
    "rprop-irprop-": (ob.Rprop, dict(lr=0.05)),
    "rprop-rprop-": (ob.Rprop, dict(lr=0.05, variant="rprop-", maximize=True)),
    "rprop-rprop+": (ob.Rprop, dict(lr=0.05, variant="rprop+")),
    "rprop-irprop+": (ob.Rprop, dict(lr=0.05, variant="irprop+", etas=(0.4, 1.3))),
    "rprop-backtrack": (ob.Rprop, dict(lr=0.05, variant="backtrack")),
    "adagrad": (ob.Adagrad, dict(lr=0.1, lr_decay=0.01, weight_decay=0.1)),
    "sgd-nesterov": (ob.SGD, dict(lr=0.05, momentum=0.8, nesterov=True)),
    "sgd-plain": (ob.SGD, dict(lr=0.05)),
    "rmsprop-centered-momentum": (ob.RMSprop, dict(lr=0.01, centered=True, momentum=0.5)),
    "adam-amsgrad": (ob.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    "adamw": (ob.AdamW, dict(lr=0.01, weight_decay=0.5)),
}
SHAPES = [(7,), (3, 5), (), (20_001,)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_device_steps_through_the_bindings_match_the_host(on_stub, rng, case, dtype):
    cls, hp = CASES[case]
    host = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    dev = [HostBacked(h.copy()) for h in host]
    cpu = cls([{"params": host[:2]}, {"params": host[2:], "lr": hp["lr"] / 2}], **hp)
    gpu = cls([{"params": dev[:2]}, {"params": dev[2:], "lr": hp["lr"] / 2}], **hp)
    for k in range(5):
        grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        cpu.step(grads, loss=float(k % 2))
        gpu.step([HostBacked(g) for g in grads], loss=float(k % 2))
    for h, d in zip(host, dev):
        if case.startswith("adam"):
            # The CPU rounds each array's last size mod (32 bytes / itemsize) elements as
            # torch's fused CPU tail does; the device kernels, as torch's CUDA ones, have no tail.
            body = h.size - h.size % (32 // h.itemsize)
            np.testing.assert_array_equal(h.ravel()[:body], d.host.ravel()[:body])
            tol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(h, d.host, rtol=tol, atol=tol)
        else:
            np.testing.assert_array_equal(h, d.host)
    launches, chunks, chunk_elems, blocks = _device.CudaBackend.last_launch
    assert (launches, chunk_elems) == (1, 8192)
    assert chunks == sum(-(-math.prod(s) // 8192) for s in SHAPES) == 6
    assert blocks == 6
    state = gpu.state_dict()  # device state copied back through the stub's copy()
    for i in range(len(SHAPES)):
        for key, value in cpu.state[i].items():
            if isinstance(value, np.ndarray):
                got = state["state"][i][key]
                if case.startswith("adam"):  # the CPU's tails, as above
                    body = value.size - value.size % (32 // value.itemsize)
                    np.testing.assert_array_equal(got.ravel()[:body], value.ravel()[:body])
                    np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-12)
                else:
                    np.testing.assert_array_equal(got, value)


GROUPS = {
    "adagrad": [(0.1, 0.01, 0.0, 1e-10, False)],
    "adam": [(1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, False)],
}


def _device_step(name, p, g, states, counter, flag, scale):
    """One device step with a device counter, found_inf and grad_scale."""
    lists = [[states[0]]] if name == "adagrad" else [[states[0]], [states[1]], None]
    getattr(_device.CUDA_BACKEND, name)(
        [p], [g], *lists, [counter], GROUPS[name], [1],
        found_inf=_device.describe(flag, "found_inf"), grad_scale=scale,
    )


def test_found_inf_grad_scale_and_device_steps_through_the_bindings(on_stub, rng):
    """Device counters (count + 1 read by the kernel), a scale each gradient is divided by
    (and written back unscaled), and a found_inf that skips the step."""
    n = 10_000
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(n).astype(dtype)
        g = rng.standard_normal(n).astype(dtype)
        for name in ("adagrad", "adam"):
            ref, ref_state = x.copy(), [np.zeros(n, dtype) for _ in range(2)]
            host_lists = [ref_state[:1]] if name == "adagrad" else [
                ref_state[:1], ref_state[1:], None]
            getattr(_core, name)([ref], [g.copy()], *host_lists, [3.0], GROUPS[name], [1])

            p, states = HostBacked(x.copy()), [HostBacked(np.zeros(n, dtype)) for _ in range(2)]
            scale = HostBacked(np.array([4.0], np.float32))
            flag = HostBacked(np.array([0.0], np.float32))
            counter = HostBacked(np.array([2.0], np.float32))  # two steps taken before
            scaled = HostBacked(g * 4)
            _device_step(name, p, scaled, states, counter, flag, scale)
            np.testing.assert_array_equal(p.host, ref)
            np.testing.assert_array_equal(scaled.host, g)  # written back unscaled
            assert counter.host[0] == 2.0  # the caller advances the counter
            flag.host[0] = 1.0
            before = p.host.copy()
            _device_step(name, p, scaled, states, counter, flag, scale)
            np.testing.assert_array_equal(p.host, before)
            np.testing.assert_array_equal(scaled.host, g)


def test_steps_must_all_be_host_counts_or_all_device_counters(on_stub):
    p = HostBacked(np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="steps: expected all host step counts or all device"):
        _device.CUDA_BACKEND.adagrad([p, HostBacked(np.zeros(4, np.float32))],
                                     [HostBacked(np.ones(4, np.float32))] * 2,
                                     [HostBacked(np.zeros(4, np.float32))] * 2,
                                     [HostBacked(np.zeros(1, np.float32)), 1.0],
                                     [(0.1, 0.0, 0.0, 1e-10, False)], [2])
    with pytest.raises(ValueError, match=r"steps\[0\]: expected one float32 or float64"):
        _device.CUDA_BACKEND.adagrad([p], [HostBacked(np.ones(4, np.float32))],
                                     [HostBacked(np.zeros(4, np.float32))],
                                     [HostBacked(np.zeros(2, np.float32))],
                                     [(0.1, 0.0, 0.0, 1e-10, False)], [1])
    with pytest.raises(ValueError, match="grad_scale: expected one float32 element"):
        _device.CUDA_BACKEND.sgd([p], [HostBacked(np.ones(4, np.float32))], None, [1.0],
                                 [(0.1, 0.0, 0.0, 0.0, False, False)], [1],
                                 grad_scale=HostBacked(np.ones(1, np.float64)))
    assert not p.host.any()


# ------------------------------------------------------------------ availability in words
@pytest.mark.parametrize(
    "env, reason",
    [
        ({"OPTBOWL_CUDA_STUB_DRIVER": "0"}, r"^no NVIDIA driver/GPU found"),
        (
            {"OPTBOWL_CUDA_STUB_DRIVER": "12040"},
            r"^driver too old: this build \(CUDA 13\.0 runtime\) needs a driver for CUDA >= "
            r"13\.0 \(NVIDIA driver >= 580\), the installed one supports CUDA 12\.4",
        ),
        ({"OPTBOWL_CUDA_STUB_DEVICES": "0"}, r"^no CUDA GPU found \(the NVIDIA driver for CUDA "
                                              r"13\.0 sees none\)"),
        ({"OPTBOWL_CUDA_STUB_CC": "75"}, r"^GPU 0 \(optbowl host stub, compute capability 7\.5\) "
                                          r"cannot run this build's kernels"),
        ({}, None),
    ],
)
def test_unavailable_reason_says_what_is_missing(on_stub, monkeypatch, env, reason):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    got = ob.cuda.unavailable_reason()
    if reason is None:
        assert got is None and ob.cuda.is_available()
    else:
        assert got is not None and __import__("re").search(reason, got), got
        assert ob.cuda.is_available() == (ob.cuda.device_count() > 0)


def test_required_driver():
    assert _device.required_driver(12000) == 12010  # kernel arguments over 4 KB
    assert _device.required_driver(12080) == 12010
    assert _device.required_driver(13000) == 13000
    assert _device.required_driver(13020) == 13000


# ------------------------------------------------------------------ streams
def test_producers_on_other_streams_are_waited_for(on_stub, monkeypatch):
    waits = []
    stub_module = _device._cuda

    class Recorder:
        def __getattr__(self, name):
            return getattr(stub_module, name)

        def wait_streams(self, consumer, producers, device):
            waits.append((consumer, list(producers), device))
            stub_module.wait_streams(consumer, producers, device)

    monkeypatch.setattr(_device, "_cuda", Recorder())
    p = HostBacked(np.zeros(4, np.float32), stream=7)  # the launch stream: the params'
    opt = ob.SGD(p, lr=0.5)
    opt.step(HostBacked(np.ones(4, np.float32), stream=9))
    assert waits == [(7, [9], 0)]
    np.testing.assert_array_equal(p.host, -0.5)
    waits.clear()
    opt.step(HostBacked(np.ones(4, np.float32), stream=7))  # the same stream: no wait
    opt.step(HostBacked(np.ones(4, np.float32)))  # no stream: nothing pending
    assert waits == []


# ------------------------------------------------------------------ the launch plan
A100, H100 = 108, 132


def _expected(sizes, resident):
    """The plan's rule, written out: chunk length, chunks, launches, blocks."""
    chunk = 65536
    while chunk > 8192 and sum(-(-n // chunk) for n in sizes) < 4 * resident:
        chunk //= 2
    chunks = sum(-(-n // chunk) for n in sizes)
    # launches: up to 2,048 chunks and 110 tensors each
    launches, entries, slots, blocks = 0, 0, 0, 0
    for n in sizes:
        if n == 0:
            continue
        for c in range(-(-n // chunk)):
            entries += 1
            if entries == 2048:
                launches += 1
                blocks += min(entries, resident) if resident > 0 else entries
                entries, slots = 0, (0 if c + 1 < -(-n // chunk) else -1)
        slots += 1
        if slots == 110:
            if entries:
                launches += 1
                blocks += min(entries, resident) if resident > 0 else entries
            entries, slots = 0, 0
    if entries:
        launches += 1
        blocks += min(entries, resident) if resident > 0 else entries
    return launches, chunks, chunk, blocks


def _resnet18():
    path = ROOT / "bench" / "resnet18_shapes.json"
    if not path.exists():
        pytest.skip("bench/ is not here (tests run outside the source tree)")
    return [math.prod(s) for s in json.loads(path.read_text())["shapes"]]


@pytest.mark.parametrize("sms, name", [(A100, "A100"), (H100, "H100")])
@pytest.mark.parametrize("workload", ["1M", "16M", "100M", "resnet18"])
def test_launch_plan_on_real_sm_counts(on_stub, sms, name, workload):
    sizes = {"1M": [1 << 20], "16M": [16 << 20], "100M": [100_000_000]}.get(workload)
    sizes = sizes if sizes is not None else _resnet18()
    resident = 2 * sms  # float32: two 512-thread blocks per SM
    plan = ob.cuda.launch_plan(sizes, sms=sms)
    assert tuple(plan) == _expected(sizes, resident)
    # every resident block has work, and at least 4 chunks where the chunk can shrink to it
    assert plan.blocks >= min(plan.chunks, resident)
    assert plan.chunk_elems == 8192 or plan.chunks >= 4 * resident
    known = {
        ("1M", "A100"): (1, 128, 8192, 128),
        ("1M", "H100"): (1, 128, 8192, 128),
        ("16M", "A100"): (1, 1024, 16384, 216),
        ("16M", "H100"): (1, 2048, 8192, 264),
        ("100M", "A100"): (1, 1526, 65536, 216),
        ("100M", "H100"): (1, 1526, 65536, 264),
        ("resnet18", "A100"): (1, 1470, 8192, 216),
        ("resnet18", "H100"): (1, 1470, 8192, 264),
    }
    assert tuple(plan) == known[(workload, name)]


@pytest.mark.parametrize(
    "sizes, plan",
    [
        ([], (0, 0, 65536, 0)),
        ([0, 0], (0, 0, 65536, 0)),
        ([1], (1, 1, 65536, 1)),
        ([65537], (1, 2, 65536, 2)),
        ([100_000_000], (1, 1526, 65536, 1526)),
        ([1] * 110, (1, 110, 65536, 110)),  # the tensor table is full
        ([1] * 111, (2, 111, 65536, 111)),
        ([65536 * 2048], (1, 2048, 65536, 2048)),  # exactly the chunk table
        ([65536 * 2048 + 1, 5], (2, 2050, 65536, 2050)),  # a tensor split across launches
        ([1] * 109 + [65536 * 2100], (2, 2209, 65536, 2209)),
        ([1] * 109 + [65536 * 2100, 3], (2, 2210, 65536, 2210)),
        ([3 << 31], (48, 98304, 65536, 98304)),  # over 2**31 elements
    ],
)
def test_launch_plan_bounds_without_a_device(on_stub, sizes, plan):
    assert tuple(ob.cuda.launch_plan(sizes)) == plan == _expected(sizes, 0)


def test_float64_plan_and_argument_checks(on_stub):
    plan = ob.cuda.launch_plan([16 << 20], sms=A100, blocks_per_sm=1)
    assert tuple(plan) == (1, 512, 32768, 108) == _expected([16 << 20], A100)
    with pytest.raises(ValueError, match="sms, blocks_per_sm"):
        ob.cuda.launch_plan([1], sms=-1)
    with pytest.raises(ValueError, match="sizes: entries must be >= 0"):
        ob.cuda.launch_plan([-1])


def test_the_stub_is_not_the_installed_module():
    assert getattr(sys.modules.get("optbowl._cuda"), "host_stub", False) is False
