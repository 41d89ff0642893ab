"""What the gallery (sphinx-gallery) needs from the docs: the examples' command line.

Every script in ``examples/`` takes ``--out DIR`` (where its own PNG files go) and
``--quick``. In the gallery the figures come from matplotlib itself, so the script's own
files go to a folder beside the generated gallery pages (``auto_examples/_script_out/``,
which nothing links to); the quick setting comes from ``OPTBOWL_EXAMPLES_QUICK``, which
``conf.py`` sets.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List


def reset_argv(gallery_conf: Dict[str, Any], script_vars: Dict[str, Any]) -> List[str]:
    """The arguments of one example run by sphinx-gallery: ``--out`` a folder of its own."""
    name = os.path.splitext(os.path.basename(script_vars["src_file"]))[0]
    return ["--out", os.path.join(gallery_conf["src_dir"], "auto_examples", "_script_out", name)]
