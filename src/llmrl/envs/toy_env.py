"""teachDeepRL's ``ToyEnv`` (Portelas et al. 2019, §4.1): a cheap testbed for curriculum teachers.

The task space is the unit square (``n_dims``-cube) cut into ``n_cells`` per side. Each cell holds
the student's competence, 0..100. One episode on a task adds 1 to its cell's competence if the
cell is *unlocked*, and pays the cell's competence / 100. Cell (0, …, 0) is always unlocked; any
other cell unlocks once one of its *previous* neighbours (index lower by one or equal in every
dimension, diagonals included) reaches competence 75. A cell counts as mastered above 75. So a
teacher must find the corner cell, practise it ~76 times and then follow the front of unlocked
cells across the space: random sampling masters ~4% of the 100 cells in 20k episodes, ALP-GMM
~32% (frontier.md §6).

Rules as in teachDeepRL's ``teachDRL/toy_env/toy_env.py`` (MIT); its reward noise is commented
out there, so episodes here are deterministic too. Cells are found with ``floor(x · n_cells)``,
the top edge belonging to the last cell (teachDeepRL bins with ``np.arange`` edges, which differ
only on a set of measure zero).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

__all__ = ["ToyEnv"]

MAX_COMPETENCE = 100
MASTERY = 75  # 3/4 of MAX_COMPETENCE


class ToyEnv:
    """A grid of cells whose competence grows with practice once a previous neighbour is mastered."""

    def __init__(self, n_cells: int = 10, n_dims: int = 2) -> None:
        if n_cells < 1 or n_dims < 1:
            raise ValueError(f"n_cells and n_dims must be >= 1, got {n_cells}, {n_dims}")
        self.n_cells = n_cells
        self.n_dims = n_dims
        self.competence = np.zeros((n_cells,) * n_dims, dtype=np.int64)
        # Offsets to the previous neighbours: every 0/-1 combination except the cell itself.
        self._back = [np.array(o) for o in itertools.product((0, -1), repeat=n_dims) if any(o)]

    def reset(self) -> None:
        """Forget all practice: every cell back to competence 0."""
        self.competence[...] = 0

    def cell(self, task: Sequence[float] | np.ndarray) -> tuple[int, ...]:
        """The cell index of a task (a point of the unit cube; extra dimensions are ignored)."""
        p = np.asarray(task, dtype=np.float64)[: self.n_dims]
        if p.shape != (self.n_dims,) or np.any(p < 0.0) or np.any(p > 1.0):
            raise ValueError(f"a ToyEnv task is a point of [0, 1]^{self.n_dims}, got {task!r}")
        return tuple(np.minimum((p * self.n_cells).astype(np.int64), self.n_cells - 1).tolist())

    def unlocked(self, cell: tuple[int, ...]) -> bool:
        if not any(cell):
            return True
        for offset in self._back:
            prev = np.maximum(np.array(cell) + offset, 0)
            if tuple(prev) != cell and self.competence[tuple(prev)] >= MASTERY:
                return True
        return False

    def episode(self, task: Sequence[float] | np.ndarray) -> float:
        """Practise ``task`` once; returns the cell's competence after it, in [0, 1]."""
        cell = self.cell(task)
        if self.unlocked(cell):
            self.competence[cell] = min(self.competence[cell] + 1, MAX_COMPETENCE)
        return float(self.competence[cell]) / MAX_COMPETENCE

    def mastered_percent(self) -> float:
        """Percentage of cells whose competence exceeds 75 (teachDeepRL's ``get_score``)."""
        return 100.0 * float(np.mean(self.competence > MASTERY))
