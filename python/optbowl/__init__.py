"""optbowl: fused element-wise optimizer updates, and the quadratic bowl they run on.

>>> import numpy as np, optbowl as ob
>>> params = [np.ones(5, np.float32), np.ones((2, 3), np.float32)]
>>> opt = ob.Rprop(params, lr=0.1)
>>> opt.step([np.ones(5, np.float32), -np.ones((2, 3), np.float32)])
>>> float(params[0][0]), float(params[1][0, 0])
(0.8999999761581421, 1.100000023841858)
"""

from . import functional, schedules
from ._core import get_num_threads, set_num_threads
from ._version import __version__
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .quickprop import QuickProp
from .rmsprop import RMSprop
from .rprop import Rprop
from .sgd import SGD
from .sparse import SparseRows

__all__ = [
    "Adagrad",
    "Adam",
    "AdamW",
    "QuickProp",
    "RMSprop",
    "Rprop",
    "SGD",
    "SparseRows",
    "functional",
    "schedules",
    "__version__",
    "get_num_threads",
    "set_num_threads",
]
