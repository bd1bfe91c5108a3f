"""Typed schema of a job's configuration and its validation.

Hydra composes the configuration; :func:`validate` checks it against this schema before anything is
trained or tracked, and turns every problem into one :class:`ConfigError` naming the key, the value and
what is allowed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from initsweep import initializers

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "leaky_relu", "gelu", "selu")

# Summary metrics every job logs at its end; any of them can be the sweep's optimized_metric.
# Metrics whose name ends in "loss"/"loss_best"/"loss_final" are minimized, the others maximized.
SUMMARY_METRICS = (
    "val/acc_best",
    "val/loss_best",
    "val/acc_final",
    "test/acc",
    "test/loss",
    "train/loss_final",
)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the allowed values."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MLPConfig(_Strict):
    name: Literal["mlp"]
    depth: int = Field(2, ge=0, description="hidden layers")
    width: int = Field(256, ge=1, description="units per hidden layer")
    activation: Literal[ACTIVATIONS] = "relu"  # type: ignore[valid-type]


ModelConfig = Annotated[Union[MLPConfig], Field(discriminator="name")]


class DigitsConfig(_Strict):
    name: Literal["digits"]
    split_seed: int = 0
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> "DigitsConfig":
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self


DataConfig = Annotated[Union[DigitsConfig], Field(discriminator="name")]


class InitConfig(BaseModel):
    """The weight scheme (``name`` plus its parameters, checked by the catalogue) and bias handling."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    bias: Literal["zeros", "constant", "weight"] = "zeros"
    bias_value: float = 0.0

    @property
    def params(self) -> dict[str, Any]:
        """The scheme's own parameters: everything but name and the bias settings."""
        return dict(self.model_extra or {})


class TrainerConfig(_Strict):
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"


class TrackingConfig(_Strict):
    uri: str | None = None
    log_plots: bool = True


class DiagnosticsConfig(_Strict):
    """Signal-propagation diagnostics (src/initsweep/diagnostics.py) on a fixed batch of training data."""

    enabled: bool = True
    batch_size: int = Field(512, ge=1, description="examples in the fixed diagnostic batch")
    every: int = Field(0, ge=0, description="0: at initialization only; k: also after every k-th epoch")
    warn_factor: float = Field(100.0, gt=1, description="warn when activation std changes more than this")
    duplicate_tol: float = Field(1e-6, ge=0)
    saturation_tol: float = Field(0.01, gt=0, lt=0.5)


class Config(_Strict):
    model: ModelConfig
    data: DataConfig
    init: InitConfig
    trainer: TrainerConfig
    tracking: TrackingConfig = TrackingConfig()
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    seed: int = 0
    experiment_name: str = Field("initsweep", min_length=1)
    optimized_metric: Literal[SUMMARY_METRICS] = "val/acc_best"  # type: ignore[valid-type]


def _describe(error: dict[str, Any]) -> str:
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "MLP", "Digits"))]
    # Discriminated unions put the tag value in the location path ("model.mlp.depth"): drop it.
    loc = [p for i, p in enumerate(loc) if not (i == 1 and loc[0] in ("model", "data"))]
    key = ".".join(loc) or "<config>"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "union_tag_invalid":
        return f"{key}.name = {error['input'].get('name')!r}: {error['msg']}"
    return f"{key} = {error.get('input')!r}: {error['msg']}"


def validate(raw: dict[str, Any]) -> Config:
    """Check a composed configuration (a plain dict) and return it typed.

    Raises ConfigError with one line per problem, each naming the offending key.
    """
    try:
        config = Config.model_validate(raw)
    except ValidationError as e:
        lines = [_describe(err) for err in e.errors(include_url=False)]
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(lines)) from None
    try:
        initializers.check_params(config.init.name, config.init.params)
    except ValueError as e:
        raise ConfigError(f"Invalid configuration:\n  {e}") from None
    return config
