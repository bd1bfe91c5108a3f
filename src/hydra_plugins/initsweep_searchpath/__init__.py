"""A user's config directories come first: ``initsweep --config-dir DIR`` (and ``$INITSWEEP_CONFIG_DIRS``) are
searched before the package's own ``initsweep/conf``, so a user's ``model/resmlp.yaml`` replaces the built-in
option of that name instead of being shadowed by it (Hydra's own ``--config-dir`` goes after the primary
config dir). Hydra's plugin scan finds this package; see ``plugin.py``."""
