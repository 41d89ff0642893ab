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


# ------------------------------------------------------------------ steps sharing an array
def _overlapping(worker_step, main_step, attempts=10):
    """Call main_step() while worker_step() runs in another thread, inside its GIL-free
    kernel; per attempt, the RuntimeError each raised (None where it stepped)."""
    outcomes = []
    for _ in range(attempts):
        inside = threading.Event()
        worker_error = []

        def worker():
            inside.set()
            try:
                worker_step()  # keeps the GIL until its kernel releases it
            except RuntimeError as e:
                worker_error.append(e)

        t = threading.Thread(target=worker)
        t.start()
        inside.wait()  # returns once the worker let go of the GIL: inside its kernel
        try:
            main_step()
            main_error = None
        except RuntimeError as e:
            main_error = e
        t.join()
        outcomes.append((main_error, worker_error[0] if worker_error else None))
    return outcomes


def _refusals(outcomes):
    return [e for pair in outcomes for e in pair if e is not None]


def test_two_optimizers_sharing_a_parameter_refuse_to_overlap(gil_held_until_released):
    # The lost update: both steps read p, both write p - 1; with the claim, the second of
    # two overlapping steps is refused and changes nothing, and every accepted step counts.
    p = np.zeros(BIG, np.float32)
    g = np.ones(BIG, np.float32)
    a, b = ob.SGD([p], lr=1.0), ob.SGD([p], lr=1.0)
    a.step([g])
    b.step([g])
    b_state = b.state_dict()
    outcomes = _overlapping(lambda: a.step([g]), lambda: b.step([g]))
    refused = _refusals(outcomes)
    assert refused, "a step overlapping another step on the same array was accepted"
    for e in refused:
        assert str(e).startswith("params[0]: shares memory with an array of a step running")
    if all(main is not None for main, _ in outcomes):
        assert_same_bits(b.state_dict(), b_state)  # b's refused steps changed nothing
    # every accepted step counted: the first two and each one not refused
    steps = 2 + 2 * len(outcomes) - len(refused)
    np.testing.assert_array_equal(p, np.full(BIG, -float(steps), np.float32))
    assert ob._core.steps_in_flight() == 0


def test_an_array_written_by_one_step_and_read_by_another_is_refused(gil_held_until_released):
    p = np.zeros(BIG, np.float32)
    q = np.zeros(BIG, np.float32)
    a = ob.SGD([p], lr=1.0)
    b = ob.SGD([q], lr=1.0)
    g = np.ones(BIG, np.float32)
    # b reads a's parameter as its gradient, while a writes it; and the other way round
    for outcomes in (_overlapping(lambda: a.step([g]), lambda: b.step([p])),
                     _overlapping(lambda: b.step([p]), lambda: a.step([g]))):
        refused = _refusals(outcomes)
        assert refused
        # the refused one names its own array: b its gradient, a its parameter
        assert all(str(e).split(":")[0] in ("grads[0]", "params[0]") for e in refused)
        for main, worker in outcomes:
            assert main is None or worker is None


def test_overlapping_views_are_refused_and_disjoint_ones_step_together(gil_held_until_released):
    buf = np.zeros(2 * BIG, np.float32)
    g = np.ones(BIG, np.float32)
    left = ob.SGD([buf[:BIG]], lr=1.0)
    right = ob.SGD([buf[BIG:]], lr=1.0)  # adjacent, not overlapping
    shifted = ob.SGD([buf[BIG - 1:2 * BIG - 1]], lr=1.0)  # one element in common with left
    outcomes = _overlapping(lambda: left.step([g]), lambda: right.step([g]), attempts=4)
    assert not _refusals(outcomes)
    np.testing.assert_array_equal(buf, np.full(2 * BIG, -4.0, np.float32))
    assert _refusals(_overlapping(lambda: left.step([g]), lambda: shifted.step([g])))


def test_a_gradient_shared_by_two_steps_is_fine(gil_held_until_released):
    # reading the same array in two steps at once is safe, and is not refused
    g = np.ones(BIG, np.float32)
    p, q = np.zeros(BIG, np.float32), np.zeros(BIG, np.float32)
    a, b = ob.Adam([p], lr=0.5), ob.Adam([q], lr=0.5)
    assert not _refusals(_overlapping(lambda: a.step([g]), lambda: b.step([g]), attempts=3))
    assert_same_bits(p, q)


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_every_rule_claims_its_arrays(row, gil_held_until_released):
    # every optimizer's compiled step, through the short step and the functional layer
    params, grads = _big_problem()
    opt = row.make(params)
    row.step(opt, grads)
    twin = row.make(params)  # a second optimizer of the same arrays
    row.step(twin, grads)
    # attempts: on a loaded machine the main thread may wake only after the worker's kernel
    # ended, and that attempt does not overlap; one that does is enough
    outcomes = _overlapping(lambda: row.step(opt, grads), lambda: row.step(twin, grads),
                            attempts=10)
    refused = _refusals(outcomes)
    # the first array found in use is named: a parameter (the lowest address of those shared)
    named = ("params[0]: shares memory", "params[1]: shares memory")
    assert refused and all(str(e).startswith(named) for e in refused)
    assert ob._core.steps_in_flight() == 0


def test_a_claim_is_released_when_the_call_fails_after_taking_it():
    p, g, s = np.zeros(10), np.ones(10), np.zeros(10)
    with pytest.raises(ValueError, match="steps"):
        ob._core.adagrad([p], [g], [s], [1.0, 2.0], [(0.1, 0.0, 0.0, 1e-10, False)], [1])
    with pytest.raises(ValueError, match="group_sizes"):
        ob._core.adagrad([p], [g], [s], [1.0], [(0.1, 0.0, 0.0, 1e-10, False)], [2])
    assert ob._core.steps_in_flight() == 0
    ob.Adagrad([p], lr=0.1).step([g])  # the arrays are free again
    assert ob._core.steps_in_flight() == 0
