"""Key name <-> small int code, per operator: lets per-key state live in numpy arrays."""

from __future__ import annotations

import numpy as np


class KeyCodes:
    """Codes are assigned in first-seen order and never change (snapshots store `names`)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self.names)
            self.names.append(name)
        return code

    def encode(self, names: list[str]) -> tuple[np.ndarray, int]:
        """Codes of `names` and how many codes are new (dict lookups: cheaper than a
        vectorized `np.unique` over strings at every batch size)."""
        before = len(self.names)
        get = self._codes.get
        codes = [get(n) for n in names]
        if None in codes:
            codes = [c if c is not None else self.code(str(n))
                     for c, n in zip(codes, names, strict=True)]
        return np.array(codes, dtype=np.int64), len(self.names) - before
