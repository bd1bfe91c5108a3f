"""Checking an init config before training: one ``ValueError`` per bad key, naming the key and what is allowed.

``config.validate`` calls :func:`check_init`; :func:`~initsweep.core.initializers.apply.initialize` calls
:func:`check_params`. The messages are formatted here and nowhere else.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from initsweep.core.initializers.catalogue import SCHEMES, CustomParams, output_schemes
from initsweep.core.targets import load_callable


def _pydantic_message(name: str, error: ValidationError, prefix: str) -> str:
    parts = []
    for err in error.errors(include_url=False):
        err["msg"] = err["msg"].removeprefix("Value error, ")
        key = ".".join([prefix, *map(str, err["loc"])]) if err["loc"] else prefix
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(SCHEMES[name].params.model_fields) or "none"
            parts.append(f"{key}: unknown parameter of init={name} (its parameters: {allowed})")
        elif err["loc"]:
            parts.append(f"{key} = {err.get('input')!r}: {err['msg']}")
        else:
            parts.append(f"{prefix} (init={name}): {err['msg']}")
    return "\n  ".join(parts)


def _check_custom(p: CustomParams, prefix: str) -> None:
    key = f"{prefix}._target_"
    if not p.target or p.target == "???":
        raise ValueError(
            f"{key}: required with init=custom: the dotted path of a function fn(tensor, **kwargs) that fills "
            f"the tensor in place, e.g. {key}=torch.nn.init.orthogonal_ (extra arguments: +init.NAME=VALUE)"
        )
    fn = load_callable(p.target, key, "fn(tensor, **kwargs)")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins without a signature: checked when called
    import torch  # only for init=custom: a real tensor to bind the signature to

    try:
        sig.bind(torch.empty(0), **p.kwargs)
    except TypeError as e:
        raise ValueError(
            f"{key} = {p.target!r}: cannot be called as fn(tensor, {', '.join(f'{k}=...' for k in p.kwargs)}): "
            f"{e} (extra keyword arguments come from +init.NAME=VALUE)"
        ) from None


def check_params(name: str, params: Mapping[str, Any], prefix: str = "init") -> Any:
    """Validate a scheme's parameters; ValueError names the key (``prefix.param``) and what is allowed."""
    if name not in SCHEMES:
        raise ValueError(f"{prefix}.name = {name!r}: unknown initializer; available: {', '.join(SCHEMES)}")
    try:
        p = SCHEMES[name].params.model_validate(dict(params))
    except ValidationError as e:
        raise ValueError(_pydantic_message(name, e, prefix)) from None
    if isinstance(p, CustomParams):  # init=custom, the one scheme with these parameters
        _check_custom(p, prefix)
    return p


def check_init(
    name: str,
    params: Mapping[str, Any],
    bias: str,
    output: str | None,
    output_params: Mapping[str, Any],
) -> None:
    """Everything about an init config that can be checked without a model: the scheme's parameters, the
    output layer's scheme and parameters, and whether ``init.bias=weight`` makes sense for them."""
    check_params(name, params)
    if output is not None:
        if output not in output_schemes():
            raise ValueError(
                f"init.output = {output!r}: unknown; use null (same as the other layers) or one of: "
                f"{', '.join(output_schemes())}"
            )
        check_params(output, output_params, prefix="init.output_params")
    elif output_params:
        raise ValueError("init.output_params: given but init.output is null; set init.output=SCHEME as well")
    if SCHEMES[name].bias_std is not None and bias != "zeros":
        raise ValueError(
            f"init.bias = {bias!r}: init={name} draws the biases itself (init.sigma_b2; 0 gives zero biases); "
            f"leave init.bias at zeros"
        )
    if bias == "weight":
        for scheme in {name, output or name}:
            if not SCHEMES[scheme].iid and scheme != "custom":
                raise ValueError(
                    f"init.bias = 'weight': init={scheme} does not draw entries independently, so it has no "
                    f"distribution for a bias; use init.bias=zeros or init.bias=constant"
                )
