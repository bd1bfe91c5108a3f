"""Hydra's joblib launcher, made to survive a dead worker: ``hydra/launcher=joblib`` selects it.

When a worker dies (SIGKILL, the OOM killer), loky breaks the whole pool and the stock launcher raises
``TerminatedWorkerError``: the jobs still queued never run. This launcher re-runs, once, every job of the
batch that returned no result; the dead job's run is closed KILLED (``failure=lost``) by
:mod:`initsweep.tracking.recovery`, and the sweep exits 1 naming it. ``conf/hydra/launcher/joblib.yaml`` selects it
with the stock settings (Hydra takes the stock config as its schema); see ``launcher.py``.
"""

import warnings

# conf/hydra/launcher/joblib.yaml extends the stock config of the same name on purpose. Hydra's warning about
# that is silenced here, in the package, so that it holds in the main process (which imports launcher.py) and
# in every worker (which imports _resilient.py to run a job and composes its config there).
warnings.filterwarnings("ignore", message=r"(?s).*automatic_schema_matching")
