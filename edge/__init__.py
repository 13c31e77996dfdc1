"""showsay on-device runtime: hearing, seeing, the taught memory and the matching core. Never imports torch."""

import os

__version__ = "0.1.0"

# The matching core multiplies small matrices (a request against the taught pairs) on a controller
# thread beside ONNX Runtime's own thread; OpenBLAS spreading each product over every core costs more
# than it saves there, and far more on a busy CPU (measured on this 2-core machine at load 14: the
# nearest of 10,000 taught utterances 29 ms with its threads, 3 ms with one). One thread unless the
# user says otherwise; it only takes effect when numpy is first imported after this package.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
