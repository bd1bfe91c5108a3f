"""The launcher class (selected by conf/hydra/launcher/joblib.yaml); see the package docstring."""

# No `from __future__ import annotations`: Hydra executes plugin modules without registering them in
# sys.modules, and dataclasses then cannot resolve string annotations.
from collections.abc import Sequence

from hydra.core.utils import JobReturn

from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher


class ResilientJoblibLauncher(JoblibLauncher):
    """JoblibLauncher whose batch survives a dead worker: jobs without a result are launched once more."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        # joblib (and numpy with it) loads only when a sweep launches, not on every start-up of train.py
        from hydra_plugins.initsweep_joblib_launcher import _resilient

        return _resilient.launch(self, job_overrides, range(initial_job_idx, initial_job_idx + len(job_overrides)))

    def launch_numbered(self, job_overrides: Sequence[Sequence[str]], numbers: Sequence[int]) -> Sequence[JobReturn]:
        """:meth:`launch` of jobs numbered ``numbers`` (a resumed sweep's remaining jobs, initsweep.sweep.resume)."""
        from hydra_plugins.initsweep_joblib_launcher import _resilient

        return _resilient.launch(self, job_overrides, numbers)
