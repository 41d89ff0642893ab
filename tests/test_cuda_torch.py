"""optbowl.torch's CUDA-only code on the host: when it takes GradScaler's scale into its
kernels, and what its CUDA launch hands the kernels (a recording entry stands for the CUDA
module). The GPU runs of the same paths are in tests/test_cuda_gpu.py."""

import pytest

torch = pytest.importorskip("torch")

import optbowl.torch as obt  # noqa: E402
from optbowl import _device  # noqa: E402


@pytest.mark.parametrize("cls", [obt.Adam, obt.AdamW, obt.Adagrad, obt.SGD, obt.Rprop,
                                 obt.RMSprop])
def test_cpu_parameters_leave_amp_scaling_to_the_grad_scaler(cls):
    kw = {"fused": True} if cls in (obt.Adam, obt.AdamW, obt.Adagrad, obt.SGD) else {}
    opt = cls([torch.zeros(3)], lr=0.1, **kw)
    assert opt._step_supports_amp_scaling is False


def test_step_counts_of_host_counters_are_read_on_the_host():
    opt = obt.Adam([torch.zeros(3)], lr=0.1)
    state = {"step": torch.tensor(4.0)}
    assert opt._step_count(state, opt.param_groups[0]) == 5.0
    assert obt.Rprop([torch.zeros(3)])._step_count(state, {}) == 0.0


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))


def test_the_cuda_launch_hands_over_scale_flag_and_counters(monkeypatch):
    opt = obt.Adam([torch.zeros(3), torch.zeros(2)], lr=0.1, fused=True)
    counters = [torch.tensor(2.0), torch.tensor(3.0)]
    batch = obt._Batch((True, True, False))
    for i, (p, c) in enumerate(zip(opt.param_groups[0]["params"], counters)):
        batch.add(p, torch.ones_like(p), [torch.zeros_like(p), torch.zeros_like(p), None], c,
                  opt.param_groups[0], i)
    views = {}

    def scalar_view(x, who, device):
        views[who] = (x, device)
        return "view-of-" + who

    monkeypatch.setattr(_device, "_scalar_view", scalar_view)
    scale, found = torch.tensor([8.0]), torch.tensor([0.0])
    opt.grad_scale, opt.found_inf = scale, found
    entry = Recorder()
    assert opt._launch_cuda(entry, batch) is found
    (args, kwargs), = entry.calls
    assert kwargs == {"found_inf": "view-of-found_inf", "grad_scale": scale}
    assert views == {"found_inf": (found, None)}
    assert args[5] == counters  # the device counters themselves, not their values
    assert args[6] == [opt._kernel_group(opt.param_groups[0])] and args[7] == [2]

    # host and device counters in one batch: the device ones are read (count + 1)
    batch.steps = [counters[0], 7.0]
    del opt.grad_scale, opt.found_inf
    entry = Recorder()
    assert opt._launch_cuda(entry, batch) is None
    (args, kwargs), = entry.calls
    assert args[5] == [3.0, 7.0] and kwargs == {"found_inf": None, "grad_scale": None}
