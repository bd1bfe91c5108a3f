"""Print the initializer catalogue as a Markdown table: every scheme, its parameters with defaults, and
its formula. docs/initializers.md includes this output.

    python scripts/inits.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runnable without installing

from initsweep.core.initializers import SCHEMES, CustomParams  # noqa: E402
from initsweep.report.comparison import markdown_table  # noqa: E402


def _default(value: object) -> str:
    return "null" if value is None else str(value)


def parameters(name: str) -> str:
    """``key=default`` for each parameter of a scheme (the values of conf/init/NAME.yaml)."""
    params = SCHEMES[name].params
    if params is CustomParams:
        return "`_target_` (required), any `+init.NAME=VALUE` as keyword arguments"
    parts = [f"`{key}={_default(field.default)}`" for key, field in params.model_fields.items()]
    return ", ".join(parts) or "none"


def catalogue_table() -> str:
    """One row per scheme: ``init=NAME``, its parameters, its formula (std(W) is what every run logs as
    ``init/<layer>/weight_std_expected``), and the reference or remark."""
    rows = [
        [f"`{s.name}`", parameters(s.name), s.formula.replace("|", "\\|"), s.summary or ""] for s in SCHEMES.values()
    ]
    return markdown_table(["init", "parameters (defaults)", "formula", "notes"], rows)


if __name__ == "__main__":
    print(catalogue_table())
