"""Weight initialization: functional fills, the catalogue of schemes, and applying a scheme to a model.

- :mod:`.fills`: pure in-place fills of one tensor (``torch.nn.init`` style: formula, std, reference).
- :mod:`.catalogue`: each scheme's parameter schema, its fill and the std its formula promises (``SCHEMES``).
- :mod:`.validation`: checks of an init config before training, with messages naming the key.
- :mod:`.apply`: :func:`initialize` a model (output layer, biases, LSUV) and the statistics of each weight.

Imports nothing from tracking, tuning, the job, the sweep or ``hydra_plugins``.
"""

from typing import TYPE_CHECKING, Any

from initsweep.core.initializers.catalogue import SCHEMES, CustomParams, InitError, Scheme, Site
from initsweep.core.initializers.fills import (
    constant_,
    delta_orthogonal_,
    fan,
    fans,
    gain_for,
    identity_,
    normal_,
    orthogonal_,
    pytorch_default_,
    sparse_,
    truncated_normal_,
    uniform_,
    variance_scaling_,
    variance_scaling_std,
)
from initsweep.core.initializers.validation import check_init, check_params

# apply imports torch; config validation imports this package, so apply's names load on first use (PEP 562).
_APPLY = (
    "InitSpec",
    "Layer",
    "LayerStats",
    "RuleSpec",
    "check_rules",
    "init_layers",
    "initialize",
    "lsuv_",
    "output_layer",
)


def __getattr__(name: str) -> Any:
    if name in _APPLY:
        from initsweep.core.initializers import apply

        return getattr(apply, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from initsweep.core.initializers.apply import (
        InitSpec,
        Layer,
        LayerStats,
        RuleSpec,
        apply_rules,
        check_rules,
        init_layers,
        initialize,
        lsuv_,
        output_layer,
    )

__all__ = [
    "SCHEMES",
    "apply_rules",
    "CustomParams",
    "InitError",
    "InitSpec",
    "Layer",
    "LayerStats",
    "RuleSpec",
    "Scheme",
    "Site",
    "check_init",
    "check_rules",
    "check_params",
    "constant_",
    "delta_orthogonal_",
    "fan",
    "fans",
    "gain_for",
    "identity_",
    "init_layers",
    "initialize",
    "lsuv_",
    "normal_",
    "orthogonal_",
    "output_layer",
    "pytorch_default_",
    "sparse_",
    "truncated_normal_",
    "uniform_",
    "variance_scaling_",
    "variance_scaling_std",
]
