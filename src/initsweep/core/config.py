"""Typed schema of a job's configuration and its validation.

Hydra composes the configuration; :func:`validate` checks it against this schema before anything is
trained or tracked, and turns every problem into one :class:`ConfigError` naming the key, the value and
what is allowed.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from initsweep.core import idx, initializers, targets
from initsweep.protocol import SUMMARY_METRICS

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "leaky_relu", "gelu", "selu")

OUTPUTS = ("softmax", "sigmoid")
EXPERIMENT_NAME_MAX = 500  # MLflow's limit on an experiment name, in characters
SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's seeds are 32-bit; torch's take 64 bits


def _nodes(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every node of a nested mapping, each before the nodes below it."""
    for key, value in tree.items():
        name = f"{prefix}{key}"
        yield name, value
        if isinstance(value, Mapping):
            yield from _nodes(value, f"{name}.")


def flatten(tree: Mapping[str, Any]) -> dict[str, str]:
    """Nested mapping -> ``{"a.b.c": "value"}`` (dotted keys, values as strings; lists as their string form)."""
    return {key: str(value) for key, value in _nodes(tree) if not isinstance(value, Mapping)}


def dotted_keys(tree: Mapping[str, Any]) -> list[str]:
    """Dotted keys of every leaf and inner node of a nested mapping."""
    return [key for key, _ in _nodes(tree)]


def did_you_mean(word: str, options: Sequence[str], section: str = "") -> str:
    """``; did you mean X?`` naming the options ``word`` may stand for (those it begins, at most three, else
    the closest by difflib, ratio >= 0.6), or "" when none; a ``section`` is shown before each, ``section.X``."""
    import difflib

    matches = [o for o in options if o.startswith(word) and o != word][:3]
    matches = matches or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    names = [f"{section}.{m}" if section else m for m in matches]
    return f"; did you mean {' or '.join(names)}?" if names else ""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the allowed values."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelConfig(BaseModel):
    """Any ``torch.nn.Module``: ``_target_`` (a dotted path to the class or a function returning one) and its
    keyword arguments (every other key but ``name``, a label for reports). Built and checked by
    :func:`initsweep.core.models.build_model`, which also passes the data's ``input_shape`` / ``num_classes``."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False, populate_by_name=True)

    target: str = Field(alias="_target_", pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
    name: str | None = Field(None, description="label of the architecture in reports (default: the target's name)")

    @property
    def kwargs(self) -> dict[str, Any]:
        """The constructor's keyword arguments: every key but ``_target_`` and ``name``."""
        return dict(self.model_extra or {})

    @property
    def label(self) -> str:
        """``name``, else the target's last component in lower case (``initsweep.core.models.MLP`` -> mlp)."""
        return self.name or self.target.rsplit(".", 1)[-1].lower()


class _ValSplit(_Strict):
    """A stratified train/val split (the dataset brings its test set) that depends on split_seed only.

    ``val_fraction = 0``: no validation split; the val/* metrics and best-state selection then use the
    training set. ``standardize``: scale every feature to mean 0, std 1 with the training rows' statistics."""

    split_seed: int = Field(0, ge=0, le=SEED_MAX)
    val_fraction: float = Field(0.15, ge=0, lt=0.9)
    standardize: bool = True


class _Split(_ValSplit):
    """A stratified train/val/test split that depends on split_seed only."""

    test_fraction: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> _Split:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self


class DigitsConfig(_Split):
    name: Literal["digits"]


class CirclesConfig(_Split):
    """scikit-learn's make_circles: two noisy concentric circles, 2-D points, 2 classes."""

    name: Literal["circles"]
    n_samples: int = Field(1000, ge=20)
    noise: float = Field(0.1, ge=0, description="std of the Gaussian noise added to the points")
    factor: float = Field(0.5, gt=0, lt=1, description="inner radius / outer radius")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="generation seed")


class MNIST1DConfig(_ValSplit):
    """mnist1d's procedural make_dataset (no download): signals of length 40, 10 classes. Its own test
    split (the last 1 - train_split) is the test set; val_fraction of the rest is the validation set."""

    name: Literal["mnist1d"]
    num_samples: int = Field(5000, ge=100)
    train_split: float = Field(0.8, gt=0, lt=1, description="mnist1d's train share; the rest is the test set")
    shuffle_seq: bool = Field(False, description="permute the 40 positions (destroys spatial structure)")
    seed: int = Field(42, ge=0, le=SEED_MAX, description="generation seed (42 = the published dataset)")


def _existing_directory(value: str | None, what: str) -> str:
    """``value`` when it names an existing directory; ValueError saying ``what`` is required, or that it is
    missing."""
    if value is None or value == "???":
        raise ValueError(f"required: {what}")
    if not Path(value).expanduser().is_dir():
        raise ValueError(f"directory does not exist: {Path(value).expanduser().resolve()}")
    return value


class IDXConfig(_Split):
    """MNIST-format IDX files (optionally .gz) in a local directory. The test files are the test set
    (set them to null to split test_fraction off the training files instead)."""

    name: Literal["idx"]
    path: str | None = Field(None, validate_default=True, description="directory holding the IDX files")
    train_images: str = "train-images-idx3-ubyte"
    train_labels: str = "train-labels-idx1-ubyte"
    test_images: str | None = "t10k-images-idx3-ubyte"
    test_labels: str | None = "t10k-labels-idx1-ubyte"
    max_train: int | None = Field(None, ge=10, description="use only the first max_train training samples")

    @field_validator("path")
    @classmethod
    def _directory_exists(cls, value: str | None) -> str | None:
        return _existing_directory(value, "the directory holding the IDX files, e.g. data.path=/data/mnist")

    @field_validator("train_images", "train_labels", "test_images", "test_labels")
    @classmethod
    def _file_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        directory = info.data.get("path")
        if value is not None and directory is not None and idx.find(directory, value) is None:
            where = Path(directory).expanduser().resolve() / value
            raise ValueError(f"file not found: {where} (nor {where.name}.gz)")
        return value

    @model_validator(mode="after")
    def _test_pair(self) -> IDXConfig:
        if (self.test_images is None) != (self.test_labels is None):
            raise ValueError("test_images and test_labels must both be set or both be null")
        return self


class CIFAR10Config(_ValSplit):
    """The CIFAR-10 "python version" batches in a local directory (never downloaded): pickles of a dict with
    ``b"data"`` (n, 3072) uint8 rows, channel-major 3x32x32, and ``b"labels"``. Samples are (3, 32, 32)
    images scaled to [0, 1]; ``test_batch`` is the test set, val_fraction of the training batches the
    validation set."""

    name: Literal["cifar10"]
    path: str | None = Field(
        None, validate_default=True, description="directory holding data_batch_1 ... data_batch_5 and test_batch"
    )
    train_batches: tuple[str, ...] = Field(
        tuple(f"data_batch_{i}" for i in range(1, 6)), min_length=1, validate_default=True
    )
    test_batch: str = Field("test_batch", validate_default=True)
    max_train: int | None = Field(None, ge=10, description="use only the first max_train training samples")

    @field_validator("path")
    @classmethod
    def _directory_exists(cls, value: str | None) -> str | None:
        return _existing_directory(value, "the directory holding CIFAR-10's batches, e.g. data.path=/data/cifar")

    @field_validator("train_batches", "test_batch")
    @classmethod
    def _files_exist(cls, value: str | tuple[str, ...], info: ValidationInfo) -> str | tuple[str, ...]:
        directory = info.data.get("path")
        for name in [value] if isinstance(value, str) else value:
            where = Path(directory or "").expanduser().resolve() / name
            if directory is not None and not where.is_file():
                raise ValueError(f"file not found in data.path: {where}")
        return value


class _StreamableSplit(_Split):
    """Data that may not fit in memory. ``max_memory_mb``: the most megabytes (2**20 bytes) of float32 samples
    held as tensors; larger data streams from its source through a DataLoader with ``workers`` worker
    processes (0: in the training process). See docs/data.md."""

    max_memory_mb: float = Field(1024, ge=0, description="larger data streams through a DataLoader")
    workers: int = Field(0, ge=0, description="DataLoader worker processes of streamed data")


class ImageFolderConfig(_StreamableSplit):
    """Images in class folders, ``path/<class>/<image>`` (torchvision's ImageFolder layout), read with Pillow.
    Classes sorted by folder name are labels 0..C-1; samples are (3, H, W) RGB, or (1, H, W) with
    ``grayscale``, scaled to [0, 1]. ``size`` [H, W] (or one int: square) resizes every image; without it
    all images must have one size."""

    name: Literal["imagefolder"]
    path: str | None = Field(None, validate_default=True, description="root directory: one folder of images per class")
    grayscale: bool = False
    size: tuple[int, int] | int | None = Field(None, description="[H, W] or one int: resize every image")

    @field_validator("path")
    @classmethod
    def _directory_exists(cls, value: str | None) -> str | None:
        return _existing_directory(value, "the root directory of the class folders, e.g. data.path=/data/pets")

    @field_validator("size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int] | int | None) -> tuple[int, int] | None:
        hw = (value, value) if isinstance(value, int) else value
        if hw is not None and min(hw) < 1:
            raise ValueError("must be [H, W] or one int, each at least 1 pixel")
        return hw


class CallableDataConfig(_StreamableSplit):
    """A user's dataset: ``_target_`` is the dotted path of a callable; every key that is not initsweep's
    own (name, split_seed, val_fraction, test_fraction, standardize, max_memory_mb, workers) is passed to it
    as a keyword argument. It returns ``(x, y)`` (split here like digits) or ``{"train": (x, y), "val": (x, y),
    "test": (x, y)}`` (val optional: then val_fraction of train); a ``torch.utils.data.Dataset`` of (x, y)
    samples may stand for any (x, y). ``name`` labels the data; default: the callable's name."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False, populate_by_name=True)

    target: str = Field(alias="_target_", min_length=1, description="dotted path of the data callable")
    name: str = ""

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, node: Any) -> Any:
        if isinstance(node, Mapping) and not node.get("name") and isinstance(node.get("_target_"), str):
            return {**node, "name": node["_target_"].rsplit(".", 1)[-1]}
        return node

    @property
    def kwargs(self) -> dict[str, Any]:
        """The callable's keyword arguments: every key that is not initsweep's own."""
        return dict(self.model_extra or {})

    def resolve(self) -> Callable[..., Any]:
        """The callable, checked to accept ``kwargs``; ValueError naming ``data._target_`` or ``data.<kwarg>``."""
        fn = targets.load_callable(self.target, "data._target_", "returning (x, y) or {'train': (x, y), ...}")
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return fn  # builtins without a signature: checked when called
        try:
            sig.bind(**self.kwargs)
        except TypeError as e:
            raise ValueError(_refusal(f"{self.target}{sig}", sig, self.kwargs, e)) from None
        return fn


def _refusal(call: str, sig: inspect.Signature, kwargs: Mapping[str, Any], error: TypeError) -> str:
    """Why ``fn(**kwargs)`` cannot be called, naming the ``data.<key>`` to remove or to add."""
    params = sig.parameters.values()
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        for key in kwargs:
            if key not in named:
                return f"data.{key}: not a parameter of {call}{did_you_mean(key, named, 'data')}"
    for p in params:
        if p.name in named and p.default is p.empty and p.name not in kwargs:
            return f"data.{p.name}: required by {call}; add it with +data.{p.name}=VALUE"
    return f"data._target_: {call} cannot be called with keyword arguments only: {error}"


def _data_kind(node: Any) -> str:
    """The tag of data's union: ``callable`` for a node with ``_target_``, else ``builtin`` (told by name)."""
    if isinstance(node, Mapping):
        return "callable" if "_target_" in node else "builtin"
    return "callable" if isinstance(node, CallableDataConfig) else "builtin"


BuiltinDataConfig = Annotated[
    Union[DigitsConfig, CirclesConfig, MNIST1DConfig, IDXConfig, CIFAR10Config, ImageFolderConfig],
    Field(discriminator="name"),
]
DataConfig = Annotated[
    Union[Annotated[BuiltinDataConfig, Tag("builtin")], Annotated[CallableDataConfig, Tag("callable")]],
    Discriminator(_data_kind),
]


class InitRule(_Strict):
    """One entry of ``init.rules``: for every module whose path matches the glob ``modules`` (fnmatch, e.g.
    ``layer*.*.bn2`` or ``blocks.*.fc2``), after the scheme: ``name`` (+ ``params``) re-initializes its weight
    with another scheme (Linear/Conv only); ``weight`` / ``bias`` set them to a constant (any module, e.g. a
    norm layer's gamma); ``scale`` multiplies the weight by a factor (Fixup-style). Rules apply in order."""

    modules: str = Field(min_length=1)
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    weight: float | None = None
    bias: float | None = None
    scale: float | None = None

    @model_validator(mode="after")
    def _does_something(self) -> InitRule:
        if self.name is None and self.weight is None and self.bias is None and self.scale is None:
            raise ValueError("a rule needs at least one of name, weight, bias, scale")
        if self.params and self.name is None:
            raise ValueError("params given without name (the scheme they are for)")
        return self


class InitConfig(BaseModel):
    """The weight scheme (``name`` plus its parameters, checked by the catalogue) and bias handling."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    name: str
    bias: Literal["zeros", "constant", "weight"] = "zeros"
    bias_value: float = 0.0
    output: str | None = None  # scheme of the output layer; None = the same as the other layers
    output_params: dict[str, Any] = Field(default_factory=dict)
    rules: tuple[InitRule, ...] = ()  # per-module rules by module path, applied in order after the scheme

    @property
    def params(self) -> dict[str, Any]:
        """The scheme's own parameters: everything but name, the bias, the output layer's and the rules."""
        return dict(self.model_extra or {})


class TrainerConfig(_Strict):
    """Optimizer and loop. ``batch_size = full``: full-batch gradient descent. ``steps`` (optimizer steps),
    when set, replaces ``epochs``. The lr is multiplied by a warm-up ramp over ``warmup_epochs`` and then by
    ``schedule``: none; step (x ``gamma`` every ``step_epochs``); cosine (to 0 at the last step).
    ``eval_every``: measure (and report) every k-th epoch and the last one."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(20, ge=1)
    steps: int | None = Field(None, ge=1, description="optimizer steps; replaces epochs when set")
    batch_size: int | str = 64  # or "full"
    schedule: Literal["none", "step", "cosine"] = "none"
    warmup_epochs: float = Field(0.0, ge=0, description="linear lr warm-up from lr/warmup_steps to lr")
    step_epochs: int = Field(10, ge=1, description="schedule=step: epochs between lr drops")
    gamma: float = Field(0.1, gt=0, le=1, description="schedule=step: lr factor at every drop")
    eval_every: int = Field(1, ge=1, description="evaluate every k-th epoch (and the last)")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    divergence_factor: float | None = Field(1e5, gt=1)
    threads: int | None = Field(None, ge=1, description="intra-op threads; at most the machine's CPU count")
    deterministic: bool = Field(False, description="1 thread unless threads is set, deterministic kernels")
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    checkpoint_every: int | None = Field(
        10, ge=0, description="save the training state every k-th epoch (0: only when interrupted; null: never)"
    )

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: int | None) -> int | None:
        cpus = os.cpu_count() or 1
        if value is not None and value > cpus:
            raise ValueError(f"must be at most this machine's CPU count ({cpus}), or null (chosen per job)")
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, value: int | str) -> int | str:
        if value != "full" and (not isinstance(value, int) or value < 1):
            raise ValueError("must be an integer greater than or equal to 1, or 'full' (full-batch gradient descent)")
        return value


class ParametrizationConfig(_Strict):
    """How init scale and per-layer lr change with width (src/initsweep/core/parametrization.py,
    docs/parametrizations.md): sp (standard, as the init scheme and trainer.lr say), ntk or mup; ``base_width``:
    the width at which ntk and mup equal sp (width multiplier m = width / base_width)."""

    name: Literal["sp", "ntk", "mup"] = "sp"
    base_width: int = Field(default=64, ge=1, description="units of a hidden layer at which ntk and mup equal sp")


class MetricsConfig(_Strict):
    """How the summary judges learning (src/initsweep/core/trainer.py: summarize).

    learn_level: ``val/epochs_to_learn`` is the first epoch whose val acc reaches
    chance + learn_level x (1 - chance), chance = the majority class's share of the val set.
    loss_threshold: ``train/epochs_to_loss`` is the first epoch whose full-pass train loss is below it
    (null: half the chance loss ln C). collapse_drop: ``val/collapsed`` = 1 when best - final val acc > it."""

    learn_level: float = Field(default=0.5, gt=0, le=1)
    loss_threshold: float | None = Field(default=None, gt=0)
    collapse_drop: float = Field(default=0.1, gt=0, le=1)


class TrackingConfig(_Strict):
    """Where runs go and how much of each is written (src/initsweep/core/cadence.py). ``log_every`` = k: log every
    k-th epoch, the last and about 10 log-spaced epochs per decade; null: the smallest k that keeps a run's
    logged epochs within ``max_points`` (every epoch when they fit). The summary always uses every evaluated
    epoch."""

    uri: str | None = None
    log_plots: bool = True
    # The weights at the best val accuracy as artifact checkpoint/model_state_dict.pt (initsweep.tracking.checkpoint):
    # auto = for the trials of an Optuna study only.
    checkpoint: Literal["auto", "best", "none"] = "auto"
    # CPU, memory (GPU with nvidia-ml-py) as system/* metrics (initsweep.tracking.sysmetrics)
    system_metrics: bool = True
    system_metrics_interval_s: float = Field(default=10.0, gt=0, description="seconds between system-metric samples")
    log_every: int | None = Field(default=None, ge=1, description="log every k-th epoch; null: from max_points")
    max_points: int = Field(default=500, ge=100, description="most epochs a run logs when log_every is null")


class DiagnosticsConfig(_Strict):
    """Signal-propagation diagnostics (src/initsweep/diagnostics/signal.py) on a fixed batch of training data."""

    enabled: bool = True
    batch_size: int = Field(default=512, ge=1, description="examples in the fixed diagnostic batch")
    jacobian_batch: int = Field(default=64, ge=1, description="examples of that batch for the Jacobian's spectrum")
    hidden_jacobian_batch: int = Field(
        default=8, ge=1, description="examples for the hidden-to-hidden Jacobian (width x width, one per example)"
    )
    every: int = Field(default=0, ge=0, description="0: at initialization only; k: also after every k-th epoch")
    warn_factor: float = Field(default=100.0, gt=1, description="warn when activation std changes more than this")
    duplicate_tol: float = Field(default=1e-6, ge=0)
    saturation_tol: float = Field(default=0.01, gt=0, lt=0.5)


class Config(_Strict):
    model: ModelConfig
    data: DataConfig
    init: InitConfig
    trainer: TrainerConfig
    parametrization: ParametrizationConfig = ParametrizationConfig()
    tracking: TrackingConfig = TrackingConfig()
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    metrics: MetricsConfig = MetricsConfig()
    seed: int = Field(0, ge=0, le=SEED_MAX, description="training seed (weights, batch order)")
    experiment_name: str = Field("initsweep", min_length=1, max_length=EXPERIMENT_NAME_MAX)
    max_jobs: int = Field(1000, ge=1, description="a multirun of more jobs is refused before it starts")
    resume: bool = Field(True, description="a multirun into a sweep dir holding the same sweep continues it")
    # One summary metric, or a list of them (a multi-objective study: the job returns one value per metric).
    optimized_metric: str | list[str] = "val/acc_best"

    @field_validator("optimized_metric")
    @classmethod
    def _optimized_metric(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else list(value)
        allowed = ", ".join(SUMMARY_METRICS)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"must be one summary metric or a list of distinct ones ({allowed})")
        for name in names:
            if name not in SUMMARY_METRICS:
                raise ValueError(f"{name!r} is not a summary metric; allowed: {allowed}")
        return value


def _did_you_mean(key: str, raw: dict[str, Any]) -> str:
    """``; did you mean trainer.lr?`` for an unknown ``trainer.lrr`` whose section has a close key."""
    *parent, last = key.split(".")
    section: Any = raw
    for part in parent:
        section = section.get(part, {}) if isinstance(section, dict) else {}
    siblings = [k for k in section if k != last] if isinstance(section, dict) else []
    return did_you_mean(last, siblings, ".".join(parent))


def _describe(error: ErrorDetails, raw: dict[str, Any] | None = None) -> str:
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "MLP", "Digits"))]
    if loc[:2] == ["data", "builtin"]:  # data's outer tag (built-in or callable); the built-ins' tag follows
        del loc[1]
    # Discriminated unions put the tag value in the location path ("model.mlp.depth"): drop it.
    loc = [p for i, p in enumerate(loc) if not (i == 1 and loc[0] == "data")]
    key = ".".join(loc) or "<config>"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key" + _did_you_mean(key, raw or {})
    if error["type"] == "union_tag_invalid":
        return f"{key}.name = {error['input'].get('name')!r}: {error['msg']}"
    msg = error["msg"].removeprefix("Value error, ")
    if isinstance(error.get("input"), dict):  # a whole-section check: the message names the keys
        return f"{key}: {msg}"
    shown = repr(error.get("input"))
    if len(shown) > 240:  # e.g. a 600-character experiment_name; a deep path (data.path) stays whole
        shown = f"{shown[:80]}... ({len(error['input'])} characters)"
    return f"{key} = {shown}: {msg}"


def describe_errors(error: ValidationError, section: str) -> list[str]:
    """One line per error of a pydantic check of ``section``'s keys (a built-in model's arguments)."""
    out = []
    for err in error.errors(include_url=False):
        located = ErrorDetails(**{**err, "loc": (section, *err["loc"])})
        out.append(_describe(located))
    return out


def validate(raw: dict[str, Any]) -> Config:
    """Check a composed configuration (a plain dict) and return it typed.

    Raises ConfigError with one line per problem, each naming the offending key.
    """
    try:
        config = Config.model_validate(raw)
    except ValidationError as e:
        lines = [_describe(err, raw) for err in e.errors(include_url=False)]
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(lines)) from None
    init = config.init
    try:
        initializers.check_init(init.name, init.params, init.bias, init.output, init.output_params)
        for i, rule in enumerate(init.rules):
            if rule.name is not None:
                initializers.check_params(rule.name, rule.params, f"init.rules[{i}]")
    except ValueError as e:
        raise ConfigError(f"Invalid configuration:\n  {e}") from None
    if isinstance(config.data, CallableDataConfig):  # imports the user's module; its data loads with the job
        try:
            config.data.resolve()
        except ValueError as e:
            raise ConfigError(f"Invalid configuration:\n  {e}") from None
    every, evaluated = config.tracking.log_every, config.trainer.eval_every
    if every is not None and every % evaluated:
        raise ConfigError(
            f"Invalid configuration:\n  tracking.log_every = {every}: must be a multiple of trainer.eval_every "
            f"({evaluated}), or null (from tracking.max_points)"
        )
    return config
