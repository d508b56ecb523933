"""Training code for facegate's quality models: labels, data, loss, fitting, release.

Needs the ``train`` extra (torch, torchvision, scipy): ``pip install -e ".[train]"``. On the
light install ``python -m train.<step>`` says so in one line and exits 2 (a usage error, as
the ``facegate`` command does), rather than failing deep inside with an ImportError.
"""

import sys as _sys

from facegate.extras import missing as _missing

if _missing("train"):
    if _sys.argv[:1] == ["-m"]:  # `python -m train.x` while it locates the module: one line, no traceback
        print(f"error: python -m train needs the 'train' extra ({_missing('train')[0]} is not installed): "
              "pip install 'facegate[train]'", file=_sys.stderr)
        raise SystemExit(2)
    from facegate.extras import require as _require

    _require("train", "the training code (train/)")
