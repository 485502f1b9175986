import sys
from pathlib import Path

# The checkout first: a dependency (confusables 1.2.0) installs a stray top-level ``tests``
# package into site-packages, which would shadow this repository's ``tests`` (the
# benchmarks' test support) when a benchmark runs as a script.
_ROOT = str(Path(__file__).resolve().parent.parent)
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)
