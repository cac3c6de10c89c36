"""
Longer runs and measurements, outside the test suite: run them through their shell
wrappers (scripts/bench, scripts/soak, scripts/audio-run), which start
``python -m scripts.NAME`` from the repository root. What they share with the tests is in
tests/support.
"""
