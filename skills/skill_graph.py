"""The source data's skill graph: which skill follows which, and how many skills apart two skills are.

Executing a skill for H steps from a window with token z lands where the data's next window, H steps later, has
token z'. Counting those successions over every source path gives a directed graph on the L tokens whose shortest
paths respect the source world's walls, unlike a distance between codewords or positions. The planner's
``data_graph`` fallback uses it: when no candidate's skill is permitted, take the candidate whose skill is fewest
skills away from a permitted one, so an agent that strayed into a dead end turns back the way the data leads out
of it (heading for the nearest permitted skill in a straight line drove agents into walls).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.sparse import coo_array
from scipy.sparse.csgraph import shortest_path


def skill_successions(sequences: Sequence[np.ndarray], horizon: int, num_skills: int) -> np.ndarray:
    """(L, L) int64 counts of token z followed, H steps later on the same path, by token z'.

    Args:
        sequences: per-path token sequences at stride 1 (window t starts at step t).
        horizon: H, the steps one skill runs.
        num_skills: L.
    """
    counts = np.zeros((num_skills, num_skills), dtype=np.int64)
    for tokens in sequences:
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.size > horizon:
            if tokens.min() < 0 or tokens.max() >= num_skills:
                raise ValueError(f"tokens must lie in [0, {num_skills}), got [{tokens.min()}, {tokens.max()}]")
            np.add.at(counts, (tokens[:-horizon], tokens[horizon:]), 1)
    return counts


def succession_distance(counts: np.ndarray, min_count: int = 1) -> torch.Tensor:
    """(L, L) succession counts -> (L, L) float32 hops of the shortest succession path from z to z' (0 on the
    diagonal, inf where none). ``min_count``: successions seen fewer times are not edges."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"counts must be a square (L, L) array, got shape {counts.shape}")
    rows, cols = np.nonzero(counts >= min_count)
    graph = coo_array((np.ones(rows.size), (rows, cols)), shape=counts.shape).tocsr()
    return torch.as_tensor(shortest_path(graph, directed=True, unweighted=True), dtype=torch.float32)


def to_triples(counts: np.ndarray) -> list[list[int]]:
    """(L, L) counts -> [[z, z', count], ...] for every nonzero entry (a compact JSON form)."""
    rows, cols = np.nonzero(counts)
    return [[int(r), int(c), int(counts[r, c])] for r, c in zip(rows, cols)]


def from_triples(triples: Sequence[Sequence[int]], num_skills: int) -> np.ndarray:
    """Inverse of ``to_triples``."""
    counts = np.zeros((num_skills, num_skills), dtype=np.int64)
    for z, z_next, count in triples:
        counts[z, z_next] = count
    return counts
