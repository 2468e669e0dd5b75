"""The latency histogram of a run: its bins, shared by the engine that fills
it (engine.py), the result that reads percentiles from it (results.py) and
the report that plots its CDF (report.py)."""

from __future__ import annotations

import numpy as np

HIST_EDGES = np.geomspace(1.0, 1e9, 1201)         # ns: latency histogram bins (log, 0.75 % wide)
