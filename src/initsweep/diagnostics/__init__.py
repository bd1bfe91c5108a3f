"""Why an initializer trains well or not: signal propagation through a fixed batch (``signal``), the input-output
Jacobian's singular values (``isometry``), and the per-layer table they fill (``layer_table``).

May import: :mod:`initsweep.core` and below. A new diagnostic goes here.
"""
