"""Threads: every step releases the GIL; separate optimizers step in parallel exactly as
in sequence; one optimizer used by two threads at once refuses the second call with a
RuntimeError instead of racing on its arrays."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

import optbowl as ob
from optimizer_table import ROWS, assert_same_bits

BIG = 1 << 22  # long enough that a step takes milliseconds


@pytest.fixture
def gil_held_until_released():
    """Make the running thread keep the GIL until it releases it itself (no forced switch)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    yield
    sys.setswitchinterval(old)


def _big_problem():
    params = [np.linspace(-1, 1, BIG, dtype=np.float32), np.linspace(1, -1, BIG // 4)]
    grads = [np.cos(np.arange(p.size, dtype=p.dtype)) for p in params]
    return params, grads


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_step_releases_the_gil(row, gil_held_until_released):
    params, grads = _big_problem()
    opt = row.make(params)
    row.step(opt, grads)  # state exists now: a step does no NumPy work besides the kernel
    progress = [0]
    stop = threading.Event()

    def other_python_thread():
        while not stop.is_set():
            progress[0] += 1
            time.sleep(0)  # hand the GIL back after every increment

    t = threading.Thread(target=other_python_thread)
    t.start()
    seen = 0
    try:
        # This thread holds the GIL except where it releases it: the other thread can
        # count only while a step is inside its GIL-free compiled part.
        for _ in range(50):
            before = progress[0]
            row.step(opt, grads)
            seen += progress[0] - before
            if seen:
                break
    finally:
        stop.set()
        t.join()
    assert seen > 0, "another Python thread made no progress during any step: the GIL was held"


def _problem(seed):
    rng = np.random.default_rng(seed)
    shapes = [(ob._core.parallel_min + 123,), (33, 7), (5,), ()]
    params = [rng.standard_normal(s).astype(d)
              for s, d in zip(shapes, [np.float32, np.float64] * 2)]
    grads = [[np.asarray(rng.standard_normal(s)).astype(p.dtype) for s, p in zip(shapes, params)]
             for _ in range(15)]
    return params, grads


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_two_optimizers_in_parallel_threads_match_sequential(row):
    problems = [_problem(1), _problem(2)]
    sequential = []
    for params, grads in problems:
        ps = [p.copy() for p in params]
        opt = row.make(ps)
        for k, g in enumerate(grads):
            row.step(opt, g, loss=float(k % 3))
        sequential.append(ps)

    parallel = [[p.copy() for p in params] for params, _ in problems]
    opts = [row.make(ps) for ps in parallel]
    start = threading.Barrier(2)
    errors = []

    def run(i):
        try:
            start.wait()
            for k, g in enumerate(problems[i][1]):
                row.step(opts[i], g, loss=float(k % 3))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(parallel, sequential):
        for a, b in zip(got, want):
            assert_same_bits(a, b)


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_a_call_while_another_thread_is_inside_is_refused(row):
    params = [np.ones(10), np.ones(4, np.float32)]
    opt = row.make(params)
    row.step(opt, [np.ones(10), np.ones(4, np.float32)])
    before, state = [p.copy() for p in params], opt.state_dict()
    with opt._busy:  # as if another thread were inside a call
        with pytest.raises(RuntimeError, match=r"step: .*another thread"):
            row.step(opt, [np.ones(10), np.ones(4, np.float32)])
        with pytest.raises(RuntimeError, match=r"state_dict: .*another thread"):
            opt.state_dict()
        with pytest.raises(RuntimeError, match=r"load_state_dict: .*another thread"):
            opt.load_state_dict(state)
        with pytest.raises(RuntimeError, match=r"add_param_group: .*another thread"):
            opt.add_param_group({"params": [np.ones(2)]})
    for a, b in zip(params, before):
        assert_same_bits(a, b)
    assert_same_bits(opt.state_dict(), state)


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_a_step_overlapping_a_real_step_is_refused(row, gil_held_until_released):
    params, grads = _big_problem()
    opt = row.make(params)
    row.step(opt, grads)
    refused = 0
    for _ in range(5):
        inside = threading.Event()

        def worker():
            inside.set()
            row.step(opt, grads)  # keeps the GIL until its kernel releases it

        t = threading.Thread(target=worker)
        t.start()
        inside.wait()  # returns when the worker lets go of the GIL: inside its kernel
        try:
            row.step(opt, grads)
        except RuntimeError as e:
            assert "another thread" in str(e)
            refused += 1
        t.join()
        if refused:
            break
    assert refused, "a step that overlapped another step was not refused"


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_one_optimizer_hammered_by_two_threads_is_never_corrupted(row):
    n = ob._core.parallel_min + 5
    params = [np.linspace(-3, 3, n), np.linspace(3, -3, 17).astype(np.float32)]
    grads = [np.sin(np.arange(p.size)).astype(p.dtype) + 0.1 for p in params]
    opt = row.make(params)
    done = [0, 0]
    start = threading.Barrier(2)

    def hammer(i):
        start.wait()
        for _ in range(40):
            try:
                row.step(opt, grads)
                done[i] += 1
            except RuntimeError:
                pass

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(done) > 0  # a call is refused only while a step of the other thread runs
    # the result is that of exactly sum(done) steps, one after the other
    again = [np.linspace(-3, 3, n), np.linspace(3, -3, 17).astype(np.float32)]
    seq = row.make(again)
    for _ in range(sum(done)):
        row.step(seq, grads)
    for a, b in zip(params, again):
        assert_same_bits(a, b)
    assert_same_bits(opt.state_dict(), seq.state_dict())


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_an_optimizer_with_its_lock_still_copies_and_pickles(row):
    import copy
    import pickle

    params = [np.ones(6), np.ones(3, np.float32)]
    opt = row.make(params)
    row.step(opt, [np.full(6, 0.5), np.full(3, -0.5, np.float32)])
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert clone._busy is not opt._busy and not clone._busy.locked()
        g = [np.full(6, 0.25), np.full(3, 0.25, np.float32)]
        row.step(clone, g)
        twin = copy.deepcopy(opt)
        row.step(twin, [a.copy() for a in g])
        assert_same_bits(clone.state_dict(), twin.state_dict())


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("compact", [False, True])
def test_long_and_short_chunks_cover_every_element_once(threads, compact):
    # More elements than 2 * threads * chunk_size_max: the chunk table runs from the
    # longest chunks down to the shortest, across tensor boundaries; one thread walks each
    # tensor whole. Both must give the same bits.
    sizes = [2 * threads * ob._core.chunk_size_max + 4097, ob._core.chunk_size + 3, 999]
    rng = np.random.default_rng(7)
    start = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [[rng.standard_normal(n).astype(np.float32) for n in sizes] for _ in range(3)]
    for g in grads:
        g[0][::7] = 0.0
    results = []
    before = ob.get_num_threads()
    try:
        for t in (1, threads):
            ob.set_num_threads(t)
            params = [p.copy() for p in start]
            opt = ob.Rprop(params, lr=0.01, compact_state=compact)
            for g in grads:
                opt.step(g)
            results.append(params)
    finally:
        ob.set_num_threads(before)
    for one, many in zip(*results):
        np.testing.assert_array_equal(one, many)
    assert not np.array_equal(results[0][0], start[0])


# ----------------------------------------------------------------------------- thread count
def _os_threads():
    return len(os.listdir("/proc/self/task"))


def _settled_os_threads(want, timeout_s=5.0):
    # A joined thread leaves /proc a moment after join() returns: wait for the count to
    # reach `want` (a bound on the wait, not a timing assertion), then return it.
    end = time.monotonic() + timeout_s
    n = _os_threads()
    while n != want and time.monotonic() < end:
        time.sleep(0.005)
        n = _os_threads()
    return n


@pytest.fixture
def restore_threads():
    before = ob.get_num_threads()
    yield
    ob.set_num_threads(0)
    assert ob.get_num_threads() == before


@pytest.mark.parametrize("bad", [10**6, 10**100, -1, -(10**100)])
def test_set_num_threads_refuses_counts_beyond_the_cap(bad, restore_threads):
    cap = ob._core.max_num_threads()
    assert cap >= 16 and cap >= 4 * (os.cpu_count() or 1)
    ob.set_num_threads(2)
    with pytest.raises(ValueError, match=rf"^n: must be from 0 .* to {cap} .*got {bad}$"):
        ob.set_num_threads(bad)
    with pytest.raises(ValueError, match="^n: "):
        ob.set_num_threads(cap + 1)
    assert ob.get_num_threads() == 2  # unchanged by the refused calls
    ob.set_num_threads(cap)
    assert ob.get_num_threads() == cap


@pytest.mark.parametrize("bad", [2.0, True, "4", None])
def test_set_num_threads_takes_only_an_int(bad, restore_threads):
    ob.set_num_threads(3)
    with pytest.raises(TypeError, match="^n: expected an int"):
        ob.set_num_threads(bad)
    assert ob.get_num_threads() == 3


def test_omp_num_threads_beyond_the_cap_is_lowered_to_it():
    import subprocess

    code = "import optbowl as ob; print(ob.get_num_threads(), ob._core.max_num_threads())"
    for env_value in ("100000", "3"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": env_value}, check=True)
        got, cap = map(int, out.stdout.splitlines()[-1].split())
        assert got == min(int(env_value), cap)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_the_pool_grows_to_the_count_and_shrinks_with_it(restore_threads):
    cap = ob._core.max_num_threads()
    params = [np.zeros(1 << 22, np.float32)]  # enough chunks for every thread of the cap
    grads = [np.ones(1 << 22, np.float32)]
    opt = ob.SGD(params, lr=1.0)
    bowl = ob.QuadraticBowl.from_eigenvalues(np.linspace(1.0, 9.0, 9))
    lrs = np.linspace(0.01, 0.2, 64 * cap)

    ob.set_num_threads(1)
    assert ob._core.helper_threads() == 0
    base = _os_threads()
    expected_sweep = ob.sweep(bowl, "gd", np.ones(9), 30, lr=lrs).final_error
    assert _os_threads() == base  # one thread: nothing started

    ob.set_num_threads(cap)
    opt.step(grads)
    assert ob._core.helper_threads() == cap - 1
    assert _settled_os_threads(base + cap - 1) == base + cap - 1
    res = ob.sweep(bowl, "gd", np.ones(9), 30, lr=lrs)  # the sweep runs on the same pool
    np.testing.assert_array_equal(res.final_error, expected_sweep)
    assert _os_threads() == base + cap - 1

    ob.set_num_threads(3)  # the surplus helpers exit before set_num_threads returns
    assert ob._core.helper_threads() == 2
    assert _settled_os_threads(base + 2) == base + 2
    opt.step(grads)
    ob.sweep(bowl, "gd", np.ones(9), 30, lr=lrs)
    assert _os_threads() == base + 2

    ob.set_num_threads(1)
    assert _settled_os_threads(base) == base
    opt.step(grads)
    assert _os_threads() == base
    np.testing.assert_array_equal(params[0], np.full(1 << 22, -3.0, np.float32))
