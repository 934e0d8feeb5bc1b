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
        """Codes of `names` (vectorized over repeats) and how many codes are new."""
        before = len(self.names)
        if not names:
            return np.empty(0, dtype=np.int64), 0
        unique, inverse = np.unique(np.asarray(names, dtype=object), return_inverse=True)
        mapping = np.array([self.code(str(n)) for n in unique], dtype=np.int64)
        return mapping[inverse], len(self.names) - before
