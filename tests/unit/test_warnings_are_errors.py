"""The suite turns a warning raised from Braid's own code into an error (pyproject.toml's
`filterwarnings`): a new warning fails the test that triggers it instead of reaching a user.
Warnings that libraries raise from their own code stay warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest


@pytest.mark.parametrize("module", ["features.windows", "streaming.runtime.processor",
                                    "training.run", "cli.demo", "batch", "braid_features"])
def test_a_warning_from_a_braid_module_is_an_error(module: str) -> None:
    with pytest.raises(UserWarning, match="from Braid"):
        warnings.warn_explicit("from Braid", UserWarning, f"{module}.py", 1, module=module)


@pytest.mark.parametrize("module", ["pandas.core.frame", "mlflow.types.utils", "featuresque",
                                    "ibis.backends.duckdb"])
def test_a_warning_from_elsewhere_stays_a_warning(module: str) -> None:
    with pytest.warns(DeprecationWarning):
        warnings.warn_explicit("from a library", DeprecationWarning, f"{module}.py", 1,
                               module=module)


def test_pandas_warning_about_braids_own_line_is_an_error() -> None:
    # pandas attributes SettingWithCopyWarning to the caller's line: here, a Braid module's
    source = pd.DataFrame({"a": np.arange(4.0)})
    frame = source.iloc[np.array([0, 1])]  # a copy pandas still marks as a possible view
    code = compile("frame.loc[:, ['a']] = 0.0", "training/run.py", "exec")
    with pytest.raises(pd.errors.SettingWithCopyWarning):
        exec(code, {"__name__": "training.run", "frame": frame})
