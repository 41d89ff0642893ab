"""optbowl: fused element-wise optimizer updates, and the quadratic bowl they run on.

>>> import numpy as np, optbowl as ob
>>> params = [np.ones(5, np.float32), np.ones((2, 3), np.float32)]
>>> opt = ob.Rprop(params, lr=0.1)
>>> opt.step([np.ones(5, np.float32), -np.ones((2, 3), np.float32)])
>>> float(params[0][0]), float(params[1][0, 0])
(0.8999999761581421, 1.100000023841858)
"""

# The rule modules first, in the family's order: each registers its rule (optbowl._registry),
# and that order is the order every listing of the rules follows.
from .rprop import Rprop
from .adagrad import Adagrad
from .sgd import SGD
from .quickprop import QuickProp
from .rmsprop import RMSprop
from .adam import Adam, AdamW
from .lion import Lion
from .adamax import Adamax
from .adadelta import Adadelta
from .radam import RAdam
from .nadam import NAdam
from .asgd import ASGD

from . import cuda, functional, functions, performance, schedules, spectra
from ._core import get_num_threads, set_num_threads
from ._version import __version__
from .bowl import QuadraticBowl, SweepResult, Trajectory, sweep
from .checkpoint import flatten_state, load_state, save_state, unflatten_state
from .functions import classify_critical_point, find_critical_points
from .performance import closed_form_bound, pep_bound, worst_case, worst_quadratic
from .sparse import SparseRows
from .spectra import goe_positive_fraction, matrix_power_spectrum, product_gains

__all__ = [
    "ASGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Lion",
    "NAdam",
    "QuadraticBowl",
    "QuickProp",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SGD",
    "SparseRows",
    "SweepResult",
    "Trajectory",
    "classify_critical_point",
    "closed_form_bound",
    "cuda",
    "find_critical_points",
    "flatten_state",
    "functional",
    "functions",
    "get_num_threads",
    "goe_positive_fraction",
    "load_state",
    "matrix_power_spectrum",
    "pep_bound",
    "performance",
    "product_gains",
    "save_state",
    "schedules",
    "set_num_threads",
    "spectra",
    "sweep",
    "unflatten_state",
    "worst_case",
    "worst_quadratic",
    "__version__",
]


def __getattr__(name):
    # optbowl.plot needs matplotlib (the [plot] extra): imported on first use only.
    if name == "plot":
        import importlib

        return importlib.import_module(".plot", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
