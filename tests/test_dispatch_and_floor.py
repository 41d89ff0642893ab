"""Runtime ISA dispatch (results identical on every ISA), threads, and the floor kernel."""

import numpy as np
import pytest

import optbowl as ob
from optbowl import _core

ISAS = ["baseline", "avx2", "avx512"]


def _available():
    best = ISAS.index(_core.detected_isa())
    return ISAS[: best + 1]


@pytest.fixture
def restore_wide_in_cache():
    before = _core.wide_in_cache_bytes()
    yield
    _core.set_wide_in_cache_bytes(before)


@pytest.fixture
def restore_prefetch():
    before = _core.prefetch_min_bytes()
    yield
    _core.set_prefetch_min_bytes(before)


@pytest.mark.parametrize("name", ["wide_in_cache_bytes", "prefetch_min_bytes"])
def test_byte_settings(restore_wide_in_cache, restore_prefetch, name):
    get, set_ = getattr(_core, name), getattr(_core, "set_" + name)
    assert get() >= 0
    set_(123)
    assert get() == 123
    with pytest.raises(ValueError, match="bytes"):
        set_(-1)
    assert get() == 123


def _run_rprop_variants(seed, dtype, offset):
    rng = np.random.default_rng(seed)
    # A tensor of several chunks (threads), one with a block or two of prefetches, one
    # just too short for any, and one of a few elements.
    shapes = [(_core.chunk_size * 2 + 13,), (2203,), (2049,), (5, 7)]
    out = []
    for compact in (True, False):
        for variant in ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack"):
            params = [_at(rng.standard_normal(s).astype(dtype), offset) for s in shapes]
            opt = ob.Rprop(params, lr=0.05, variant=variant, compact_state=compact)
            for k in range(5):
                grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
                grads[0][::11] = 0
                grads[0][5::97] = np.nan
                opt.step([_at(g, offset + k) for g in grads], loss=float(k % 3))
            out.append((variant, compact, params, opt.state))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prefetching_steps_give_identical_results(restore_isa, restore_prefetch, dtype):
    # Steps of the compact state over at least prefetch_min_bytes run their elements in
    # blocks, each after software prefetches of the lines ahead: 0 makes every step do
    # so, 2**62 none. Parameters and states must not depend on it, on any ISA, wherever
    # in a cache line the arrays start.
    for isa in _available():
        _core.set_cpu_isa(isa)
        for offset in (0, 3):
            _core.set_prefetch_min_bytes(1 << 62)
            plain = _run_rprop_variants(5, dtype, offset)
            _core.set_prefetch_min_bytes(0)
            prefetched = _run_rprop_variants(5, dtype, offset)
            for (variant, compact, pa, sa), (_, _, pb, sb) in zip(plain, prefetched):
                where = f"{isa} offset {offset} {variant} compact={compact}"
                for a, b in zip(pa, pb):
                    np.testing.assert_array_equal(a, b, err_msg=where)
                for i in sa:
                    for name in sa[i]:
                        np.testing.assert_array_equal(sa[i][name], sb[i][name], err_msg=where)


def test_isa_reporting(restore_isa):
    assert _core.cpu_isa() in ISAS
    assert _core.detected_isa() in ISAS
    assert _core.cpu_isa() == _core.detected_isa()  # the default: the best one
    for isa in _available():
        _core.set_cpu_isa(isa)
        assert _core.cpu_isa() == isa
    with pytest.raises(ValueError, match="isa"):
        _core.set_cpu_isa("sse9")
    for isa in ISAS[len(_available()):]:
        with pytest.raises(ValueError, match="does not support"):
            _core.set_cpu_isa(isa)


def _at(values, offset):
    """values copied into an array that starts `offset` elements into a fresh buffer."""
    buf = np.empty(values.size + offset, values.dtype)
    out = buf[offset:].reshape(values.shape)
    out[...] = values
    return out


def _run_all_rules(seed, dtype, offset=0):
    rng = np.random.default_rng(seed)
    n = _core.chunk_size * 2 + 13
    shapes = [(n,), (31,), (5, 7)]
    out = []
    for make in [
        *(lambda p, v=v: ob.Rprop(p, lr=0.05, variant=v) for v in
          ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack")),
        lambda p: ob.Rprop(p, lr=0.05, compact_state=True),
        lambda p: ob.Adagrad(p, lr=0.1, weight_decay=0.01, lr_decay=0.001),
        lambda p: ob.RMSprop(p, lr=0.01, centered=True, momentum=0.9, weight_decay=0.01),
        lambda p: ob.Adam(p, lr=0.01, amsgrad=True, weight_decay=0.01),
        lambda p: ob.AdamW(p, lr=0.01),
        lambda p: ob.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
        lambda p: ob.QuickProp(p, lr=0.01),
    ]:
        params = [_at(rng.standard_normal(s).astype(dtype), offset) for s in shapes]
        opt = make(params)
        for k in range(6):
            grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
            grads[0][::11] = 0
            grads[0][5::97] = np.nan
            opt.step([_at(g, offset + k) for g in grads], loss=float(k % 3))
        out.append(params)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_where_arrays_start(dtype):
    # The loops run the elements before the parameter's first cache line as a call of
    # their own; the parameters and gradients here start at every offset in a line.
    base = _run_all_rules(3, dtype)
    for offset in range(1, 64 // np.dtype(dtype).itemsize):
        got = _run_all_rules(3, dtype, offset)
        for rule_a, rule_b in zip(base, got):
            for a, b in zip(rule_a, rule_b):
                np.testing.assert_array_equal(a, b, err_msg=f"offset {offset}")


def _first_line_element(a):
    """Index of the element of a that starts its first 64-byte cache line."""
    return (-a.ctypes.data % 64) // a.itemsize


def test_states_start_where_their_parameter_does_in_a_cache_line():
    # Every state array has its element h start a cache line where the parameter's
    # element h does: for float states the same offset in a line as the parameter.
    rng = np.random.default_rng(0)
    makers = [
        lambda p: ob.Adam([p], lr=0.01, amsgrad=True),
        lambda p: ob.Rprop([p], compact_state=True),
        lambda p: ob.Rprop([p], variant="rprop+"),
        lambda p: ob.Adagrad([p], initial_accumulator_value=0.5),
    ]
    for offset in range(8):
        for dtype in (np.float32, np.float64):
            p = _at(rng.standard_normal(1000).astype(dtype), offset)
            for make in makers:
                opt = make(p)
                opt.step([rng.standard_normal(1000).astype(dtype)], loss=1.0)
                restored = make(p.copy())
                restored.load_state_dict(opt.state_dict())
                for name, a in opt.state[0].items():
                    if name == "step":
                        continue
                    b = restored.state[0][name]
                    np.testing.assert_array_equal(b, a)
                    for q, s in ((p, a), (restored._params[0], b)):
                        h = _first_line_element(q)
                        assert (s.ctypes.data + h * s.itemsize) % 64 == 0, (name, offset, dtype)
                        if s.dtype == q.dtype:
                            assert s.ctypes.data % 64 == q.ctypes.data % 64, (name, offset, dtype)
                    assert a.flags.c_contiguous and a.flags.writeable and b.flags.writeable


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_isa_gives_identical_results(restore_isa, restore_wide_in_cache, dtype):
    # With 'avx512', AdaGrad, RMSprop and Adam run their AVX-512 build on steps of at most
    # wide_in_cache_bytes (the default depends on the CPU), SGD whenever it is not 0: both
    # ways here.
    results = {}
    for isa in _available():
        _core.set_cpu_isa(isa)
        _core.set_wide_in_cache_bytes(0)
        results[isa] = _run_all_rules(7, dtype)
        if isa == "avx512":
            _core.set_wide_in_cache_bytes(1 << 62)
            results["avx512-wide"] = _run_all_rules(7, dtype)
    base = results["baseline"]
    for isa, got in results.items():
        for rule_a, rule_b in zip(base, got):
            for a, b in zip(rule_a, rule_b):
                np.testing.assert_array_equal(a, b, err_msg=f"{isa} differs from baseline")


@pytest.mark.parametrize("method, hyper", [
    ("momentum", {"lr": np.linspace(0.001, 0.05, 45)[:, None],
                  "momentum": np.array([0.0, 0.5, 0.9])}),
    ("rprop", {"lr": np.geomspace(1e-3, 0.5, 40)[:, None], "etas": (0.5, np.array([1.1, 1.3])),
               "variant": "irprop+"}),
    ("adam", {"lr": np.geomspace(1e-3, 0.3, 37)[:, None], "weight_decay": np.array([0.0, 0.01])}),
    ("newton", {"lr": np.linspace(0.1, 2.5, 41)}),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_isa_gives_identical_sweeps_and_runs(restore_isa, method, hyper, dtype):
    # The bowl simulator's lanes (tiled gradient, per-lane loop calls) on every ISA.
    bowl = ob.QuadraticBowl.from_eigenvalues(np.linspace(1.0, 50.0, 7), rotate=True, seed=2)
    x0 = np.linspace(-1.0, 1.0, 7)
    one = {k: (tuple(np.ravel(h)[-1] for h in v) if isinstance(v, tuple) else
               (np.ravel(v)[-1] if isinstance(v, np.ndarray) else v)) for k, v in hyper.items()}
    results = {}
    for isa in _available():
        _core.set_cpu_isa(isa)
        res = ob.sweep(bowl, method, x0, 30, dtype=dtype, **hyper)
        results[isa] = (res.final_error, res.rate, bowl.run(method, x0, 30, dtype=dtype, **one).x)
    for isa, got in results.items():
        for a, b in zip(results["baseline"], got):
            np.testing.assert_array_equal(a, b, err_msg=f"{isa} differs from baseline")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sweep_tiles_of_every_isa_equal_individual_runs(each_isa, dtype, threads):
    # Enough configurations that the gradient runs every tile of the ISA (AVX-512: 32 and 8
    # lanes; AVX2 and SSE2: 8) and single-lane remainders, over 13 coordinates (blocks of
    # 8 or 6 rows, then 2 and 1); irprop+ reads the loss, so f is computed in the tiles too.
    # Each configuration must be bowl.run's, which takes one lane, bit for bit. (The sweep's
    # error is the norm scaled by the largest |dᵢ|, its squares summed in coordinate order;
    # Trajectory's sums them pairwise.)
    bowl = ob.QuadraticBowl.from_eigenvalues(np.linspace(1.0, 40.0, 13), rotate=True, seed=5)
    x0 = np.linspace(-1.0, 1.0, 13)
    lr = np.geomspace(1e-3, 0.3, 61)
    eta_plus = np.array([1.1, 1.2, 1.3, 1.5, 2.0])
    before = ob.get_num_threads()
    try:
        ob.set_num_threads(threads)
        res = ob.sweep(bowl, "rprop", x0, 25, dtype=dtype, lr=lr[:, None], etas=(0.5, eta_plus),
                       variant="irprop+")
    finally:
        ob.set_num_threads(before)
    assert res.shape == (61, 5) and not res.diverged.all()
    for i, j in np.ndindex(res.shape):
        run = bowl.run("rprop", x0, 25, dtype=dtype, lr=lr[i], etas=(0.5, eta_plus[j]),
                       variant="irprop+")
        diff = run.x[-1].astype(np.float64) - bowl.minimizer
        scale = float(np.max(np.abs(diff)))
        squares = 0.0
        for d in diff:
            squares += (float(d) / scale) * (float(d) / scale)
        assert res.final_error[i, j] == scale * np.sqrt(squares), (i, j)
        assert res.rate[i, j] == pytest.approx(run.measured_rate(), rel=1e-12, nan_ok=True), (i, j)


def test_threads_do_not_change_results():
    before = ob.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            ob.set_num_threads(n)
            assert ob.get_num_threads() == n
            results.append(_run_all_rules(3, np.float32))
        for other in results[1:]:
            for ra, rb in zip(results[0], other):
                for a, b in zip(ra, rb):
                    np.testing.assert_array_equal(a, b)
    finally:
        ob.set_num_threads(0)
    assert ob.get_num_threads() == before


def test_omp_num_threads_is_respected():
    import subprocess
    import sys

    if not _core.has_openmp():
        pytest.skip("built without OpenMP")
    code = "import optbowl; print(optbowl.get_num_threads())"
    import os

    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.split()[-1] == "3"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("writes,reads", [(1, 0), (2, 1), (3, 1), (4, 1), (5, 2)])
def test_stream_floor_computes_its_formula(rng, dtype, writes, reads):
    shapes = [(_core.chunk_size * 3 + 1,), (7, 3), (0,), ()]
    inout = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(writes)]
    read = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(reads)]
    expect = []
    for k in range(writes):
        col = []
        for i in range(len(shapes)):
            s = np.zeros(shapes[i], dtype)
            for j in range(reads):
                s = s + read[j][i]
            col.append(inout[k][i] * dtype(2.0) + s * dtype(0.25))
        expect.append(col)
    _core.stream_floor(inout, read, 2.0, 0.25)
    for k in range(writes):
        for got, want in zip(inout[k], expect[k]):
            np.testing.assert_array_equal(got, want)


def test_stream_floor_defaults_leave_values_unchanged(rng):
    x = [rng.standard_normal(1000).astype(np.float32)]
    g = [rng.standard_normal(1000).astype(np.float32)]
    before = x[0].copy()
    _core.stream_floor([x], [g])
    np.testing.assert_array_equal(x[0], before)


def test_stream_floor_validates_arguments():
    a, b = np.zeros(4), np.zeros(5)
    with pytest.raises(ValueError, match="inout"):
        _core.stream_floor([], [])
    with pytest.raises(ValueError, match="inout"):
        _core.stream_floor([[a]] * 6, [])
    with pytest.raises(ValueError, match="read"):
        _core.stream_floor([[a]], [[np.zeros(4)]] * 3)
    with pytest.raises(ValueError, match=r"read\[0\]\[0\]: shape"):
        _core.stream_floor([[a]], [[b]])
    with pytest.raises(ValueError, match="shares memory"):
        _core.stream_floor([[a], [a]], [])
    with pytest.raises(ValueError, match=r"inout\[0\]\[0\]: is read-only"):
        ro = np.zeros(4)
        ro.flags.writeable = False
        _core.stream_floor([[ro]], [])


def test_hyper_parameter_checks_survive_caching():
    x = np.zeros(3)
    opt = ob.Rprop(x)
    opt.step(np.ones(3))
    opt.param_groups[0]["etas"] = (0.5, 0.9)
    with pytest.raises(ValueError, match="etas"):
        opt.step(np.ones(3))
    opt.param_groups[0]["etas"] = (0.5, 1.2)
    opt.step(np.ones(3))
    opt.param_groups[0]["maximize"] = 1  # equal to True, but not a bool
    with pytest.raises(TypeError, match="maximize"):
        opt.step(np.ones(3))
