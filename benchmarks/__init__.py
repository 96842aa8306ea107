"""simamqp benchmarks: ratios measured side by side in one run (``python -m benchmarks``).

Every row is measured in the same process, one after another, so the ratios are comparable
even on a noisy machine; absolute numbers are recorded in docs/benchmarks.md with the machine
and date.
"""
