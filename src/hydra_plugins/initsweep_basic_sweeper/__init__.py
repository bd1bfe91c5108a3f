"""Hydra's basic sweeper, composing each job's config once per combination of config-group choices:
``conf/hydra/sweeper/basic.yaml`` selects it for ``hydra/sweeper=basic``, Hydra's default (see ``sweeper.py``).

Hydra's own class stays one override away: point ``hydra.sweeper._target_`` at Hydra's ``BasicSweeper`` (in
its internal ``core_plugins.basic_sweeper`` module).
"""

import warnings

# The yaml above shadows Hydra's stock `basic` config, which Hydra then uses as its schema and warns about on
# every composition; Hydra's plugin scan imports this package before any composition, so the filter is in time.
warnings.filterwarnings("ignore", message=r"(?s).*automatic_schema_matching")
