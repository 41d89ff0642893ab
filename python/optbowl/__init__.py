"""optbowl: fused element-wise optimizer updates, and the quadratic bowl they run on.

>>> import numpy as np, optbowl as ob
>>> params = [np.ones(5, np.float32), np.ones((2, 3), np.float32)]
>>> opt = ob.Rprop(params, lr=0.1)
>>> opt.step([np.ones(5, np.float32), -np.ones((2, 3), np.float32)])
>>> float(params[0][0]), float(params[1][0, 0])
(0.8999999761581421, 1.100000023841858)
"""

from ._core import get_num_threads, set_num_threads
from ._version import __version__
from .adagrad import Adagrad
from .checkpoint import flatten_state, load_state, save_state, unflatten_state
from .rprop import Rprop

__all__ = [
    "Adagrad",
    "Rprop",
    "__version__",
    "flatten_state",
    "get_num_threads",
    "load_state",
    "save_state",
    "set_num_threads",
    "unflatten_state",
]
