"""Fork: a child forked after the parent's helper threads ran steps on its own arrays with
the right values, and never waits on threads that only exist in the parent.

The parent's pool is warm (its helpers have run steps, and may be spinning, asleep, or in
the middle of a step of another parent thread at the moment of the fork); each child steps
large arrays with several rules, through warm optimizers (the short step), new ones, the
sparse AdaGrad step and the bowl sweep, and compares every value with a single-threaded
run made by the parent before the fork. Each child is joined with a timeout: a child that
hangs fails the test quickly (and is killed) instead of hanging the suite.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

import optbowl as ob

pytestmark = [
    pytest.mark.skipif(
        not hasattr(os, "fork") or "fork" not in multiprocessing.get_all_start_methods(),
        reason="fork is a POSIX feature",
    ),
    # JAX, where an earlier test imported it, warns from its own at-fork hook at every fork
    # (its threads, not optbowl's); that warning is not what these tests are about.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function _at_fork:pytest.PytestUnraisableExceptionWarning"),
]

CHILDREN = 24
# All children together. A healthy child takes well under a second alone; the bound is for
# 24 of them at once on a small, loaded or sanitizer-instrumented machine: a hang fails
# the test after it instead of stalling the run.
CHILD_TIMEOUT_S = 240.0
THREADS = 4  # helpers even on a machine with fewer cores
BIG = 1 << 20  # elements: several chunks for every thread

RULES = [
    ("Rprop", {"lr": 0.01}),
    ("Rprop", {"lr": 0.01, "variant": "rprop+"}),
    ("Rprop", {"lr": 0.01, "compact_state": True}),
    ("Adagrad", {"lr": 0.1, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("QuickProp", {"lr": 0.01}),
]


def _params():
    return [np.linspace(-1.0, 1.0, BIG, dtype=np.float32),
            np.linspace(2.0, -2.0, 3 * ob._core.parallel_min + 5)]


def _grads(k):
    return [(np.cos(np.arange(p.size, dtype=p.dtype) * (0.37 + k)) + 0.1 * k).astype(p.dtype)
            for p in _params()]


GRADS = [_grads(k) for k in range(3)]


def _sparse_problem():
    params = [np.linspace(-1, 1, 2048 * 512, dtype=np.float32).reshape(2048, 512),
              np.linspace(1, -1, 2 * ob._core.parallel_min)]
    rows = np.arange(0, 2048, 3, dtype=np.int64)
    grads = [ob.SparseRows(rows, np.sin(np.arange(rows.size * 512, dtype=np.float32))
                           .reshape(rows.size, 512)),
             np.cos(np.arange(params[1].size, dtype=np.float64))]
    return params, grads


def _sweep():
    bowl = ob.QuadraticBowl.from_eigenvalues(np.linspace(1.0, 30.0, 24), rotate=True, seed=3)
    return ob.sweep(bowl, "momentum", np.linspace(-1, 1, 24), 40,
                    lr=np.geomspace(1e-3, 0.05, 300)[:, None], momentum=np.array([0.0, 0.5, 0.9]))


def _run(warm, fresh_params, sparse):
    """What every child (and, single-threaded, the parent) computes: a result per case."""
    out = []
    for opt in warm:  # optimizers that stepped before the fork: the short step
        for g in GRADS[1:]:
            opt.step(g)
        out.append([p.copy() for p in opt.param_groups[0]["params"]])
    for (cls, kw), params in zip(RULES, fresh_params):  # new ones: the Python path, then short
        opt = getattr(ob, cls)(params, **kw)
        for g in GRADS:
            opt.step(g)
        out.append(params)
    params, grads = sparse
    opt = ob.Adagrad(params, lr=0.1)
    opt.step(grads)
    opt.step(grads)
    out.append(params)
    res = _sweep()
    out.append([res.final_error, res.rate])
    return out


def _setup():
    warm = []
    for cls, kw in RULES:
        opt = getattr(ob, cls)(_params(), **kw)
        opt.step(GRADS[0])
        warm.append(opt)
    return warm


def _fresh():
    return [_params() for _ in RULES], _sparse_problem()


def _same(got, want):
    for case, (a_list, b_list) in enumerate(zip(got, want)):
        for a, b in zip(a_list, b_list):
            if a.dtype != b.dtype or a.tobytes() != b.tobytes():
                return f"case {case}: values differ from the single-threaded run"
    return None


def _child(warm, expected, threads, busy_opt, busy_grads):
    # runs in the forked child; a wrong value exits 1, an exception exits 1 with its traceback
    if threads is not None:
        ob.set_num_threads(threads)
    # the parent's other thread may have been inside a step of these arrays at the fork:
    # that step does not go on here, and its claim on the arrays is gone with it
    busy_opt.step(busy_grads)
    assert ob._core.steps_in_flight() == 0
    fresh, sparse = _fresh()
    problem = _same(_run(warm, fresh, sparse), expected)
    if problem:
        raise AssertionError(problem)


@pytest.fixture
def threads_setting():
    before = ob.get_num_threads()
    yield
    ob.set_num_threads(0)
    assert ob.get_num_threads() == before
    ob.set_num_threads(before)


def test_forked_children_step_correctly_and_never_hang(threads_setting):
    ob.set_num_threads(1)
    warm = _setup()
    fresh, sparse = _fresh()
    expected = _run(copy.deepcopy(warm), fresh, sparse)  # one thread: no helpers at all

    ob.set_num_threads(THREADS)
    _run(copy.deepcopy(warm), *_fresh())  # the helpers and OpenMP's threads are warm now
    busy = [np.ones(BIG, np.float32)]
    busy_opt = ob.SGD(busy, lr=1e-3, momentum=0.5)
    busy_grads = [np.ones(BIG, np.float32)]
    stop = threading.Event()

    def keep_the_pool_busy():  # steps in the parent at the moment of some of the forks
        while not stop.is_set():
            busy_opt.step(busy_grads)
            ob.sweep(ob.QuadraticBowl.from_eigenvalues([1.0, 2.0, 3.0]), "gd", [1.0, 1.0, 1.0],
                     20, lr=np.linspace(0.01, 0.5, 512))

    ctx = multiprocessing.get_context("fork")
    children = []
    background = threading.Thread(target=keep_the_pool_busy, daemon=True)
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a process with threads may deadlock the child:
            # that is what this test checks optbowl's threads never do.
            warnings.simplefilter("ignore", DeprecationWarning)
            for k in range(CHILDREN):
                if k == CHILDREN // 2:
                    background.start()
                if k < CHILDREN // 2:
                    busy_opt.step(busy_grads)  # the helpers have just finished a step
                threads = {0: None, 1: 1, 2: THREADS - 1, 3: THREADS + 1}[k % 4]
                args = (warm, expected, threads, busy_opt, busy_grads)
                p = ctx.Process(target=_child, args=args)
                p.start()
                children.append(p)
    finally:
        stop.set()
        if background.is_alive():
            background.join()
    hung, failed = [], []
    t0 = time.monotonic()
    for k, p in enumerate(children):
        p.join(max(0.1, CHILD_TIMEOUT_S - (time.monotonic() - t0)))
        if p.is_alive():
            hung.append(k)
            p.kill()
            p.join(5)
        elif p.exitcode != 0:
            failed.append((k, p.exitcode))
    assert not hung, f"{len(hung)} of {CHILDREN} forked children hung: {hung}"
    assert not failed, f"forked children failed (index, exit code): {failed}"


SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    import numpy as np
    import optbowl as ob

    ob.set_num_threads(4)
    params = [np.linspace(-1, 1, 1 << 20, dtype=np.float32)]
    grads = [np.cos(np.arange(1 << 20, dtype=np.float32))]
    opt = ob.Adam(params, lr=0.01)
    opt.step(grads)
    ob.sweep(ob.QuadraticBowl.from_eigenvalues([1.0, 2.0]), "gd", [1.0, 1.0], 10,
             lr=np.linspace(0.01, 0.5, 256))
    stepping = STEPPING
    stop = threading.Event()
    def busy():
        while not stop.is_set():
            opt.step(grads)
    t = threading.Thread(target=busy)
    t.start()
    pids = []
    for k in range(8):
        pid = os.fork()
        if pid == 0:
            # the child exits through the interpreter's and the C++ runtime's exit: static
            # destructors run here, with the parent's threads gone
            if stepping:
                mine = [np.ones(1 << 20, np.float32)]
                ob.SGD(mine, lr=0.5).step([np.ones(1 << 20, np.float32)])
                assert float(mine[0][123]) == 0.5
            sys.exit(0)
        pids.append(pid)
    stop.set()
    t.join()
    bad, hung, left, t0 = 0, 0, set(pids), time.monotonic()
    while left and time.monotonic() - t0 < 30:
        for pid in list(left):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                left.discard(pid)
                bad += status != 0
        time.sleep(0.01)
    for pid in left:  # hung: kill them, so that no process outlives the test
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(f"{len(left)} of {len(pids)} children hung, {bad} failed")
    sys.exit(1 if bad or left else 0)
""")


@pytest.mark.parametrize("step", [False, True], ids=["exit-only", "step-then-exit"])
def test_a_forked_child_exits_normally(step):
    # os.fork() children that return through sys.exit (not os._exit, as multiprocessing's
    # do): the process's exit must not wait for the parent's helper threads either.
    env = dict(os.environ, PYTHONWARNINGS="ignore::DeprecationWarning")
    try:
        r = subprocess.run([sys.executable, "-c", SCRIPT.replace("STEPPING", str(step))], env=env,
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the parent of the forked children hung")
    assert r.returncode == 0, r.stdout + r.stderr
