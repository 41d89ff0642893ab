"""The CUDA kernels on a GPU: torch parity, CPU parity, half/bfloat16, found_inf, state.

Every test here needs a CUDA device, optbowl's CUDA module and a CUDA build of torch; they
skip with the reason otherwise. Parity is bit for bit where the rules promise it:

* Rprop ``irprop-`` against ``torch.optim.Rprop`` on CUDA (float32, float64; single and
  foreach): bit-identical (every operation of the rule is one rounding in both).
* Every variant and AdaGrad against optbowl's own CPU kernels: bit-identical (the same
  rule, compiled with ``--fmad=false``; sqrt and division are IEEE on both).
* AdaGrad against ``torch.optim.Adagrad`` on CUDA: torch computes ``p + (-clr)·(g/std)``
  where the rule (torch's fused CPU kernel) computes ``p + ((-clr)·g)/std``, so the
  parameters agree within ``4·t·ε`` relative and the sums within ``2·t·ε`` after t steps.
* SGD, RMSprop, Adam and AdamW (every option) against optbowl's CPU kernels: bit-identical
  in float32 and float64, with the optional state lists (momentum buffer, grad_avg,
  max_exp_avg_sq) given or, when no group reads them, left out of the launch.
* SGD, RMSprop, Adam and AdamW against torch.optim on CUDA: torch's CUDA kernels round in
  another order (and contract a*b + c on their own), so they agree to a few ulps per step.
* float16/bfloat16: computed in float32 and rounded once per stored value, so they match
  the float32 CPU kernel run on the up-cast values and rounded after every step.
* The launch plan's limits (over 2,048 chunks and 110 tensors in one step, a tensor over
  2**31 elements, float64 views at a 16-byte offset), producers on other streams (DLPack,
  __cuda_array_interface__, CuPy), and optbowl.torch with fused=True on ResNet-18's
  parameters (float32, bfloat16) without a host sync, and with torch.amp.GradScaler.
"""

import numpy as np
import pytest

import optbowl as ob

torch = pytest.importorskip("torch", reason="the GPU tests compare against torch CUDA")

_REASON = ob.cuda.unavailable_reason() or (
    "torch has no CUDA" if not torch.cuda.is_available() else ""
)
pytestmark = pytest.mark.skipif(
    not (ob.cuda.is_available() and torch.cuda.is_available()),
    reason=f"needs a CUDA GPU: {_REASON}",
)

VARIANTS = ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack")
HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}
FULL = {np.float32: torch.float32, np.float64: torch.float64}
SHAPES = [(1000,), (37, 13), (3,), (), (65537,), (300_001,)]


def _bits(t):
    t = t.detach().contiguous()
    width = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.view(width).cpu().numpy()


def _assert_bits_equal(a, b):
    np.testing.assert_array_equal(_bits(a), _bits(b))


def _grads(rng, shapes, dtype, nan=True):
    out = []
    for s in shapes:
        g = rng.standard_normal(s).astype(np.float64)
        g[rng.random(s) < 0.2] = 0.0
        if nan and g.size > 10:
            g.flat[::13] = np.nan
            g.flat[5] = np.inf
        out.append(torch.tensor(g, dtype=dtype, device="cuda"))
    return out


def _device_copies(rng, tdt):
    """The same random parameters twice on the GPU: for optbowl, and for torch (with grads)."""
    base = [torch.tensor(rng.standard_normal(s), dtype=tdt, device="cuda") for s in SHAPES]
    return [b.clone() for b in base], [b.clone().requires_grad_(True) for b in base]


def _step_both(rng, opt, topt, tparams, tdt, nan=True):
    """One step of optbowl's and of torch's optimizer on the same fresh gradients."""
    grads = _grads(rng, SHAPES, tdt, nan=nan)
    for t, g in zip(tparams, grads):
        t.grad = g.clone()
    topt.step()
    opt.step(grads)


def _unaligned(t):
    """A copy of t whose data starts one element off a 16-byte boundary (scalar path; for
    float64 an 8-byte offset, while a 16-byte offset keeps the vector path)."""
    flat = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)[1:]
    flat.copy_(t.reshape(-1))
    return flat.view(t.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(
    "hp",
    [
        dict(lr=0.01),
        dict(lr=0.3, etas=(0.3, 1.7), step_sizes=(1e-4, 0.2)),
        dict(lr=1e-8, step_sizes=(1e-6, 1.0), maximize=True),
    ],
)
def test_irprop_minus_bit_identical_to_torch_cuda(rng, dtype, foreach, hp):
    tdt = FULL[dtype]
    params, tparams = _device_copies(rng, tdt)
    params[2] = _unaligned(params[2])
    opt = ob.Rprop(params, **hp)
    topt = torch.optim.Rprop(tparams, foreach=foreach, **hp)
    for _ in range(30):
        _step_both(rng, opt, topt, tparams, tdt)
        for p, t in zip(params, tparams):
            _assert_bits_equal(p, t)
    for i, t in enumerate(tparams):
        _assert_bits_equal(opt.state[i]["prev"], topt.state[t]["prev"])
        _assert_bits_equal(opt.state[i]["step_size"], topt.state[t]["step_size"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_bit_identical_to_the_cpu_kernel(rng, dtype, variant):
    host = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    dev = [torch.tensor(h, device="cuda") for h in host]
    dev[1] = _unaligned(dev[1])
    groups = [{"params": host[:3], "lr": 0.05}, {"params": host[3:], "etas": (0.4, 1.3)}]
    dgroups = [{"params": dev[:3], "lr": 0.05}, {"params": dev[3:], "etas": (0.4, 1.3)}]
    cpu, gpu = ob.Rprop(groups, variant=variant), ob.Rprop(dgroups, variant=variant)
    for k in range(25):
        grads = _grads(rng, SHAPES, FULL[dtype])
        loss = float(np.sin(k))
        gpu.step(grads, loss=loss)
        cpu.step([g.cpu().numpy() for g in grads], loss=loss)
        _assert_host_bits_equal(host, dev)
    _assert_states_equal(cpu, gpu, len(host))


def _assert_host_bits_equal(host, dev):
    for h, d in zip(host, dev):
        width = np.int64 if h.dtype == np.float64 else np.int32
        np.testing.assert_array_equal(h.view(width), _bits(d))


def _assert_states_equal(cpu, gpu, n):
    """Every state entry of the CPU optimizer equals the device one (arrays bit for bit)."""
    for i in range(n):
        for name, value in cpu.state[i].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, opt_host(gpu, i, name), err_msg=name)
            else:
                assert gpu.state[i][name] == value


def opt_host(opt, i, name):
    return opt.state[i][name].detach().cpu().numpy()


def _round_to(x, tdt):
    return torch.from_numpy(np.ascontiguousarray(x)).to(tdt).float().numpy()


def _round_host_like_device(cpu, ref, dev, tdt):
    """The device stores every value in half precision: round the host optimizer's
    parameters and state arrays the same way, then compare the parameters bit for bit."""
    for i, r in enumerate(ref):
        r[...] = _round_to(r, tdt)
        for value in cpu.state[i].values():
            if isinstance(value, np.ndarray):
                value[...] = _round_to(value, tdt)
    for r, d in zip(ref, dev):
        np.testing.assert_array_equal(r, d.float().cpu().numpy())


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_half_precision_rprop_is_float32_math_rounded_once(rng, half, variant):
    tdt = HALF[half]
    shapes = [(257,), (8, 33), (65537 + 3,)]
    dev = [torch.tensor(rng.standard_normal(s), dtype=tdt, device="cuda") for s in shapes]
    ref = [d.float().cpu().numpy() for d in dev]  # float32 copies of the half values
    lr = 2.0**-6  # exact in every dtype, so the first step sizes agree
    gpu = ob.Rprop(dev, lr=lr, variant=variant)
    cpu = ob.Rprop(ref, lr=lr, variant=variant)
    for k in range(12):
        grads = _grads(rng, shapes, tdt)
        gpu.step(grads, loss=float(k % 3))
        cpu.step([g.float().cpu().numpy() for g in grads], loss=float(k % 3))
        _round_host_like_device(cpu, ref, dev, tdt)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_adagrad_is_float32_math_rounded_once(rng, half):
    tdt = HALF[half]
    shapes = [(1000,), (65537,)]
    dev = [torch.tensor(rng.standard_normal(s), dtype=tdt, device="cuda") for s in shapes]
    ref = [d.float().cpu().numpy() for d in dev]
    hp = dict(lr=0.05, lr_decay=0.01, weight_decay=0.1)
    gpu, cpu = ob.Adagrad(dev, **hp), ob.Adagrad(ref, **hp)
    for _ in range(10):
        grads = _grads(rng, shapes, tdt, nan=False)
        gpu.step(grads)
        cpu.step([g.float().cpu().numpy() for g in grads])
        _round_host_like_device(cpu, ref, dev, tdt)  # AdaGrad's one state array: sum


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "hp",
    [
        dict(lr=0.1),
        dict(
            lr=0.05, lr_decay=0.1, weight_decay=0.01, initial_accumulator_value=0.2, maximize=True
        ),
    ],
)
def test_adagrad_bit_identical_to_the_cpu_kernel(rng, dtype, hp):
    host = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    dev = [torch.tensor(h, device="cuda") for h in host]
    cpu, gpu = ob.Adagrad(host, **hp), ob.Adagrad(dev, **hp)
    for _ in range(20):
        grads = _grads(rng, SHAPES, FULL[dtype], nan=False)
        gpu.step(grads)
        cpu.step([g.cpu().numpy() for g in grads])
    for i, (h, d) in enumerate(zip(host, dev)):
        np.testing.assert_array_equal(h, d.cpu().numpy())
        np.testing.assert_array_equal(cpu.state[i]["sum"], opt_host(gpu, i, "sum"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("foreach", [False, True])
def test_adagrad_within_the_documented_bound_of_torch_cuda(rng, dtype, foreach):
    tdt = FULL[dtype]
    eps = np.finfo(dtype).eps
    params, tparams = _device_copies(rng, tdt)
    hp = dict(lr=0.05, lr_decay=0.01, weight_decay=0.01)
    opt = ob.Adagrad(params, **hp)
    topt = torch.optim.Adagrad(tparams, foreach=foreach, **hp)
    steps = 20
    for _ in range(steps):
        _step_both(rng, opt, topt, tparams, tdt, nan=False)
    for i, (p, t) in enumerate(zip(params, tparams)):
        np.testing.assert_allclose(
            p.cpu().numpy(),
            t.detach().cpu().numpy(),
            rtol=4 * steps * eps,
            atol=4 * steps * eps * hp["lr"],
        )
        np.testing.assert_allclose(
            opt_host(opt, i, "sum"),
            topt.state[t]["sum"].cpu().numpy(),
            rtol=2 * steps * eps,
            atol=0,
        )


@pytest.mark.parametrize("optimizer", [getattr(ob, c) for c in ob._registry.classes("cuda")])
def test_device_found_inf_skips_the_step(rng, optimizer):
    params = [torch.randn(1000, device="cuda"), torch.randn(70_000, device="cuda")]
    before = [p.clone() for p in params]
    opt = optimizer(params, lr=0.1)
    found = torch.ones(1, device="cuda")
    grads = [torch.randn_like(p) for p in params]
    opt.step(grads, found_inf=found)
    for p, b in zip(params, before):
        _assert_bits_equal(p, b)
    assert opt.state == {}
    found.zero_()
    opt.step(grads, found_inf=found)
    assert all(not torch.equal(p, b) for p, b in zip(params, before))
    assert opt.state[0]["step"] == 1
    with pytest.raises(ValueError, match="found_inf: expected one float32 element"):
        opt.step(grads, found_inf=torch.zeros(2, device="cuda"))


@pytest.mark.parametrize(
    "cls, hp",
    [
        (ob.Rprop, dict(variant="rprop+")),
        (ob.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
        (ob.RMSprop, dict(lr=0.01, alpha=0.95, centered=True, momentum=0.9, weight_decay=0.1)),
        (ob.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ],
)
def test_state_dict_is_numpy_and_loads_back_to_the_device(rng, cls, hp):
    shapes = [(100,), (65537,)]
    first = cls._state_names[0]
    for tdt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        a = [torch.tensor(rng.standard_normal(s), dtype=tdt, device="cuda") for s in shapes]
        b = [x.clone() for x in a]
        opt_a = cls(a, **hp)
        grads = [_grads(rng, shapes, tdt, nan=cls is ob.Rprop) for _ in range(6)]
        for g in grads[:3]:
            opt_a.step(g)
        sd = opt_a.state_dict()
        for st in sd["state"].values():
            for v in st.values():
                assert isinstance(v, (int, np.ndarray))
        assert sd["state"][0][first].dtype == (
            np.float32 if tdt == torch.bfloat16 else np.dtype(str(tdt).split(".")[1])
        )
        for x, y in zip(a, b):
            y.copy_(x)
        opt_b = cls(b, **hp)
        opt_b.load_state_dict(sd)
        assert all(v.is_cuda for v in opt_b.state[0].values() if not isinstance(v, int))
        for g in grads[3:]:
            opt_a.step(g)
            opt_b.step(g)
        for x, y in zip(a, b):
            _assert_bits_equal(x, y)


def _resnet18_params():
    import json
    from pathlib import Path

    shapes = json.loads(
        (Path(__file__).parent.parent / "bench" / "resnet18_shapes.json").read_text()
    )["shapes"]
    return [torch.randn(*s, device="cuda") for s in shapes]


def test_mixed_dtypes_and_resnet18_launch_count(rng):
    from optbowl import _device

    params = _resnet18_params()
    opt = ob.Rprop(params)
    opt.step([torch.randn_like(p) for p in params])
    launches, chunks, chunk, blocks = _device.CudaBackend.last_launch
    assert launches == 1 and chunks == sum(-(-p.numel() // chunk) for p in params)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    plan = ob.cuda.launch_plan([p.numel() for p in params], sms=sms)
    assert (launches, chunks, chunk, blocks) == tuple(plan)  # two blocks per SM, as planned

    mixed = [
        torch.randn(1000, dtype=dt, device="cuda")
        for dt in (torch.float32, torch.float64, torch.float16)
    ]
    singles = [[m.clone()] for m in mixed]
    ob.Adagrad(mixed, lr=0.1).step([torch.ones_like(m) for m in mixed])
    assert _device.CudaBackend.last_launch[0] == 3
    for s in singles:
        ob.Adagrad(s, lr=0.1).step([torch.ones_like(s[0])])
    for m, s in zip(mixed, singles):
        _assert_bits_equal(m, s[0])


def test_runs_on_the_current_torch_stream(rng):
    n = 4_000_000
    p, ref = torch.zeros(n, device="cuda"), torch.zeros(n, device="cuda")
    g = torch.zeros(n, device="cuda")
    opt, ref_opt = ob.Rprop(p, lr=0.5), ob.Rprop(ref, lr=0.5)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(10_000_000)  # the gradient arrives late on the side stream
        g.fill_(1.0)
        opt.step(g)  # must be ordered after fill_ on the same stream
    side.synchronize()
    ref_opt.step(torch.ones(n, device="cuda"))
    torch.cuda.synchronize()
    _assert_bits_equal(p, ref)


def test_cupy_arrays(rng):
    cupy = pytest.importorskip("cupy")
    host = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    dev = [cupy.asarray(h) for h in host]
    cpu, gpu = ob.Adagrad(host, lr=0.1), ob.Adagrad(dev, lr=0.1)
    for _ in range(5):
        grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
        cpu.step(grads)
        gpu.step([cupy.asarray(g) for g in grads])
    for h, d in zip(host, dev):
        np.testing.assert_array_equal(h, cupy.asnumpy(d))
    assert isinstance(gpu.state[0]["sum"], cupy.ndarray)


class InterfaceOnly:
    """A producer that offers nothing but __cuda_array_interface__ (as Numba does)."""

    def __init__(self, t):
        self._t = t
        self.__cuda_array_interface__ = t.__cuda_array_interface__


def test_interface_only_producers_get_optbowl_state(rng):
    from optbowl import _device

    t = torch.randn(70_000, device="cuda")
    host = t.cpu().numpy()
    opt, cpu = ob.Rprop(InterfaceOnly(t), lr=0.1), ob.Rprop(host, lr=0.1)
    g = torch.randn(70_000, device="cuda")
    opt.step(InterfaceOnly(g))
    cpu.step(g.cpu().numpy())
    torch.cuda.synchronize()
    np.testing.assert_array_equal(t.cpu().numpy(), host)
    assert isinstance(opt.state[0]["prev"], _device.DeviceArray)
    np.testing.assert_array_equal(
        opt.state_dict()["state"][0]["step_size"], cpu.state[0]["step_size"]
    )


def test_host_gradients_for_device_parameters_are_refused():
    p = torch.zeros(10, device="cuda")
    opt = ob.Rprop(p)
    with pytest.raises(TypeError, match=r"grads\[0\]: a host NumPy array"):
        opt.step(np.ones(10, np.float32))
    with pytest.raises(TypeError, match=r"grads\[0\]: dtype float64 does not match"):
        opt.step(torch.ones(10, dtype=torch.float64, device="cuda"))
    assert opt.state == {} and torch.count_nonzero(p) == 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_arrays_on_two_devices_are_refused():
    with pytest.raises(ValueError, match="device"):
        ob.Rprop([torch.zeros(3, device="cuda:0"), torch.zeros(3, device="cuda:1")])


# ------------------------------------------------------------- SGD, RMSprop, Adam, AdamW
NEW_RULES = {
    "sgd-plain": (ob.SGD, dict(lr=0.1)),
    "sgd-momentum": (ob.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd-nesterov": (ob.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, maximize=True)),
    "rmsprop-plain": (ob.RMSprop, dict(lr=0.01, weight_decay=0.01)),
    "rmsprop-centered": (ob.RMSprop, dict(lr=0.01, alpha=0.9, centered=True)),
    "rmsprop-momentum": (ob.RMSprop, dict(lr=0.01, momentum=0.5, maximize=True)),
    "rmsprop-centered-momentum": (
        ob.RMSprop,
        dict(lr=0.01, alpha=0.95, centered=True, momentum=0.9, weight_decay=0.1),
    ),
    "adam": (ob.Adam, dict(lr=0.01)),
    "adam-l2": (ob.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, maximize=True)),
    "adam-amsgrad": (ob.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    "adamw": (ob.AdamW, dict(lr=0.01, weight_decay=0.5)),
    "adamw-amsgrad": (ob.AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
}
TORCH_CLASS = {ob.SGD: "SGD", ob.RMSprop: "RMSprop", ob.Adam: "Adam", ob.AdamW: "AdamW"}


def _two_groups(arrays, hp):
    """The rule's options in two groups; the second with its own lr (per-tensor hyper)."""
    return [{"params": arrays[:3]}, {"params": arrays[3:], "lr": hp["lr"] / 4}]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(NEW_RULES))
def test_new_rules_bit_identical_to_the_cpu_kernel(rng, dtype, case):
    cls, hp = NEW_RULES[case]
    host = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    dev = [torch.tensor(h, device="cuda") for h in host]
    dev[1] = _unaligned(dev[1])  # the scalar path next to the vector one
    cpu, gpu = cls(_two_groups(host, hp), **hp), cls(_two_groups(dev, hp), **hp)
    for k in range(15):
        grads = _grads(rng, SHAPES, FULL[dtype], nan=False)
        gpu.step(grads)
        cpu.step([g.cpu().numpy() for g in grads])
        if k % 5 == 4:
            _assert_host_bits_equal(host, dev)
    _assert_states_equal(cpu, gpu, len(host))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(NEW_RULES))
def test_new_rules_close_to_torch_cuda(rng, dtype, case):
    cls, hp = NEW_RULES[case]
    tdt = FULL[dtype]
    params, tparams = _device_copies(rng, tdt)
    opt = cls(_two_groups(params, hp), **hp)
    topt = getattr(torch.optim, TORCH_CLASS[cls])(_two_groups(tparams, hp), **hp)
    steps = 10
    for _ in range(steps):
        _step_both(rng, opt, topt, tparams, tdt, nan=False)
    tol = 64 * steps * np.finfo(dtype).eps
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(
            p.cpu().numpy(), t.detach().cpu().numpy(), rtol=tol, atol=tol * hp["lr"]
        )


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize(
    "case", ["sgd-momentum", "sgd-nesterov", "rmsprop-centered-momentum", "adam-amsgrad", "adamw"]
)
def test_half_precision_new_rules_are_float32_math_rounded_once(rng, half, case):
    cls, hp = NEW_RULES[case]
    tdt = HALF[half]
    shapes = [(257,), (8, 33), (65537 + 3,)]
    dev = [torch.tensor(rng.standard_normal(s), dtype=tdt, device="cuda") for s in shapes]
    ref = [d.float().cpu().numpy() for d in dev]
    gpu, cpu = cls(dev, **hp), cls(ref, **hp)
    for _ in range(8):
        grads = _grads(rng, shapes, tdt, nan=False)
        gpu.step(grads)
        cpu.step([g.float().cpu().numpy() for g in grads])
        _round_host_like_device(cpu, ref, dev, tdt)
    for i in range(len(shapes)):
        for name, value in cpu.state[i].items():
            if isinstance(value, np.ndarray):
                on_device = gpu.state[i][name].float().cpu().numpy()
                np.testing.assert_array_equal(value, on_device, err_msg=name)


def test_adamw_amsgrad_on_resnet18_is_one_launch(rng):
    from optbowl import _device

    params = _resnet18_params()
    ob.AdamW(params, amsgrad=True).step([torch.randn_like(p) for p in params])
    launches, chunks, chunk, _ = _device.CudaBackend.last_launch
    assert launches == 1 and chunks == sum(-(-p.numel() // chunk) for p in params)


# ------------------------------------------------------------- the launch plan's limits
def test_over_2048_chunks_and_110_tensors_in_one_step(rng):
    """A 150 M-element tensor split across launches beside 130 small tensors (over the
    110-tensor table): bit-identical to the CPU kernel."""
    sizes = [150_000_000] + [int(n) for n in rng.integers(1, 70_000, 130)]
    host = [rng.standard_normal(n, dtype=np.float32) for n in sizes]
    dev = [torch.from_numpy(h).cuda() for h in host]
    cpu, gpu = ob.Adagrad(host, lr=0.05, lr_decay=0.01), ob.Adagrad(dev, lr=0.05, lr_decay=0.01)
    for _ in range(2):
        grads = [torch.randn(n, device="cuda") for n in sizes]
        gpu.step(grads)
        cpu.step([g.cpu().numpy() for g in grads])
    launches, chunks, chunk, _ = _device_last()
    assert launches >= 3 and chunks > 2048 and chunk == 65536
    for h, d in zip(host, dev):
        np.testing.assert_array_equal(h, d.cpu().numpy())


def _device_last():
    from optbowl import _device

    return _device.CudaBackend.last_launch


def test_a_tensor_over_2_31_elements():
    """64-bit offsets: the chunks past 2**31 elements are updated as the CPU kernel does."""
    n = (1 << 31) + 4099
    free, _ = torch.cuda.mem_get_info()
    if free < 3 * 4 * n + (1 << 30):
        pytest.skip(f"needs {3 * 4 * n / 2**30:.0f} GiB of free GPU memory")
    gen = torch.Generator(device="cuda").manual_seed(3)
    p = torch.randn(n, device="cuda", generator=gen)
    g = torch.randn(n, device="cuda", generator=gen)
    pieces = [slice(0, 1 << 20), slice((1 << 31) - 5000, (1 << 31) + 5000), slice(n - 70_000, n)]
    host = [p[s].cpu().numpy() for s in pieces]
    host_g = [g[s].cpu().numpy() for s in pieces]
    opt = ob.Adagrad(p, lr=0.1)
    opt.step(g)
    cpu = ob.Adagrad(host, lr=0.1)
    cpu.step(host_g)
    for s, h in zip(pieces, host):
        np.testing.assert_array_equal(p[s].cpu().numpy(), h)
    np.testing.assert_array_equal(opt.state[0]["sum"][pieces[1]].cpu().numpy(), host_g[1] ** 2)
    del p, g, opt
    torch.cuda.empty_cache()


def test_float64_views_at_a_16_byte_offset_match(rng):
    """float64 at a 16-byte offset takes the vector path (it needed 32 bytes before)."""
    base = torch.tensor(rng.standard_normal(100_003), device="cuda")
    view = base[2:]  # 16 bytes in
    host = view.cpu().numpy()
    gpu, cpu = ob.Rprop(view, lr=0.1), ob.Rprop(host, lr=0.1)
    for _ in range(5):
        g = torch.tensor(rng.standard_normal(100_001), device="cuda")
        gpu.step(g)
        cpu.step(g.cpu().numpy())
    np.testing.assert_array_equal(view.cpu().numpy(), host)


# ------------------------------------------------------------- streams
class DLPackOnly:
    """A producer that offers nothing but DLPack (as JAX does)."""

    def __init__(self, t):
        self._t = t

    def __dlpack__(self, stream=None, **kw):
        return self._t.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


def test_dlpack_producers_are_ordered_by_the_protocol():
    """The gradient is written late on a side stream that is current when the step asks for
    it: __dlpack__(stream=...) must make the launch stream wait for it."""
    n = 4_000_000
    p, ref = torch.zeros(n, device="cuda"), torch.zeros(n, device="cuda")
    g = torch.zeros(n, device="cuda")
    opt, ref_opt = ob.Rprop(DLPackOnly(p), lr=0.5), ob.Rprop(ref, lr=0.5)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(20_000_000)
        g.fill_(1.0)
        opt.step(DLPackOnly(g))  # runs on the legacy default stream, not on `side`
    torch.cuda.synchronize()
    ref_opt.step(torch.ones(n, device="cuda"))
    torch.cuda.synchronize()
    _assert_bits_equal(p, ref)


def test_interface_producers_on_another_stream_are_waited_for():
    n = 4_000_000
    p, ref = torch.zeros(n, device="cuda"), torch.zeros(n, device="cuda")
    g = torch.zeros(n, device="cuda")
    opt, ref_opt = ob.Rprop(p, lr=0.5), ob.Rprop(ref, lr=0.5)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(20_000_000)
        g.fill_(1.0)
    wrapped = InterfaceOnly(g)
    # version 3 of the interface names the stream the data was written on: `side`
    wrapped.__cuda_array_interface__ = dict(
        g.__cuda_array_interface__, version=3, stream=int(side.cuda_stream)
    )
    opt.step(wrapped)  # on the default stream: must wait for `side`
    ref_opt.step(torch.ones(n, device="cuda"))
    torch.cuda.synchronize()
    _assert_bits_equal(p, ref)


def test_cupy_arrays_on_a_cupy_stream(rng):
    cupy = pytest.importorskip("cupy")
    n = 1_000_000
    host = rng.standard_normal(n).astype(np.float32)
    with cupy.cuda.Stream(non_blocking=True):
        dev = cupy.asarray(host)
        grads = cupy.asarray(np.ones(n, np.float32))
        opt = ob.Rprop(dev, lr=0.25)
        opt.step(grads)
        out = cupy.asnumpy(dev)
    cpu = ob.Rprop(host, lr=0.25)
    cpu.step(np.ones(n, np.float32))
    np.testing.assert_array_equal(out, host)


# ------------------------------------------------------------- optbowl.torch on CUDA
def _torch_cuda_kw(name, kw):
    """torch's options for the reference: its fused Adagrad is CPU-only, so foreach there."""
    if name == "Adagrad":
        return {k: v for k, v in kw.items() if k != "fused"} | {"foreach": True}
    return kw


def _model_params(dtype):
    return [p.to(dtype).requires_grad_(True) for p in _resnet18_params()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["Adam", "AdamW", "Adagrad", "SGD"])
def test_torch_fused_on_a_model_sized_list_without_host_syncs(name, dtype):
    import optbowl.torch as obt

    ours = _model_params(dtype)
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    kw = {"fused": True} if name != "SGD" else {"momentum": 0.9, "fused": True}
    opt = getattr(obt, name)(ours, lr=1e-3, **kw)
    ref = getattr(torch.optim, name)(theirs, lr=1e-3, **_torch_cuda_kw(name, kw))
    gen = torch.Generator(device="cuda").manual_seed(0)
    for k in range(4):
        for a, b in zip(ours, theirs):
            a.grad = torch.randn(a.shape, device="cuda", generator=gen).to(dtype)
            b.grad = a.grad.clone()
        if k > 0:  # after the first step (which makes the state), no step waits for the GPU
            torch.cuda.set_sync_debug_mode("error")
        try:
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        ref.step()
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    if name != "SGD":
        for a, b in zip(ours, theirs):
            assert opt.state[a]["step"].is_cuda and float(opt.state[a]["step"]) == 4.0
            assert float(ref.state[b]["step"]) == 4.0


@pytest.mark.parametrize("name", ["Adam", "Adagrad", "SGD"])
def test_torch_grad_scaler_unscales_and_skips_in_the_kernels(name):
    import optbowl.torch as obt

    shapes = [(256, 128), (128,), (70_001,)]
    ours = [torch.randn(*s, device="cuda", requires_grad=True) for s in shapes]
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    opt = getattr(obt, name)(ours, lr=1e-2, fused=True)
    ref = getattr(torch.optim, name)(theirs, lr=1e-2, **_torch_cuda_kw(name, {"fused": True}))
    assert opt._step_supports_amp_scaling
    scalers = [torch.amp.GradScaler("cuda", init_scale=1024.0) for _ in range(2)]
    gen = torch.Generator(device="cuda").manual_seed(1)
    for k in range(5):
        grads = [torch.randn(s, device="cuda", generator=gen) for s in shapes]
        if k == 2:
            grads[1][3] = float("inf")  # this step is skipped
        for params, optimizer, scaler in ((ours, opt, scalers[0]), (theirs, ref, scalers[1])):
            optimizer.zero_grad()
            for p, g in zip(params, grads):
                p.grad = g * scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
    for a, b, g in zip(ours, theirs, grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert torch.equal(a.grad, g)  # unscaled in place (the scale is a power of two)
    if name != "SGD":
        assert float(opt.state[ours[0]]["step"]) == 4.0  # the skipped step did not count
    assert scalers[0].get_scale() == scalers[1].get_scale()
