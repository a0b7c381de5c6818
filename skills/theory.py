"""Exact tabular check of MSTT's masked skill-level Bellman operator (paper, Sec. 3 / Fig. 3).
Solves a four-room skill MDP with one doorway walled off and measures how far masked planning falls
short of optimal as skills get noisier.

Construction (everything is exact linear algebra, no sampling):

* States are the free cells of the Sutton four-room layout plus one absorbing sink (index ``S - 1``).
* Skill token ``z`` means "go to cell z" (so ``L`` = number of free cells). It can be initiated only from a
  4-neighbour of ``z``; elsewhere it is a no-op. An initiated skill reaches ``z`` with probability ``p_min``
  and otherwise slips, with equal probability, in one of the three other compass directions (a slip into a
  wall leaves the agent in place). Entering the goal pays ``goal_reward``; the goal then moves to the sink.
* The structural change walls one doorway cell ``d``. The blocking matrix ``B[s, z]`` is True where skill
  ``z``'s intended transition from ``s`` enters ``d``; the skill mask is ``m(z) = not any_s B[s, z]`` -- a
  state-independent mask over skill tokens, as in the paper.
* True blocked dynamics: a blocked skill ends in the sink with ``r_term(s)``; any other outcome that would
  land in ``d`` (a slip) also ends in the sink with ``r_term(s)``.
* The masked planner uses the *source* dynamics and the mask. With deterministic skills (``p_min = 1``) the
  mask is an exact description of the change, so its greedy policy is optimal in the blocked world. With slip
  the mask removes the skill but not the slip outcomes that now fail, so the planner mis-values cells next to
  ``d``; ``gap(p) = ||V^{pi_m} - V*_blocked||_inf`` measures the cost and vanishes as ``p_min -> 1``.
  (At very low ``p_min`` the gap shrinks again: it is an absolute gap, bounded by ``V*_blocked``, which is
  itself small once the long detour around the wall is slow and discounted.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

WALL_CHAR = "#"
FREE_CHAR = "."

# Sutton, Precup & Singh (1999) four-room layout: 11x11 interior, four one-cell hallways at
# (3, 6) top-left/top-right, (6, 2) top-left/bottom-left, (7, 9) top-right/bottom-right,
# (10, 6) bottom-left/bottom-right.
FOUR_ROOMS_LAYOUT: tuple[str, ...] = (
    "#############",
    "#.....#.....#",
    "#.....#.....#",
    "#...........#",
    "#.....#.....#",
    "#.....#.....#",
    "##.####.....#",
    "#.....###.###",
    "#.....#.....#",
    "#.....#.....#",
    "#...........#",
    "#.....#.....#",
    "#############",
)

# Row/column offsets of the compass moves N, E, S, W; a slip is one of the moves other than the intended one.
COMPASS_MOVES: tuple[tuple[int, int], ...] = ((-1, 0), (0, 1), (1, 0), (0, -1))
NUM_SLIP_DIRECTIONS = len(COMPASS_MOVES) - 1
NO_DIRECTION = -1

# Masked-Q values closer than this (relative) are treated as tied by the greedy policy; linear solves leave
# noise of order 1e-15, and genuinely different skills differ by far more than this.
TIE_TOLERANCE = 1e-9
# Policy iteration stops when no state improves by more than this (relative); the fixed-point residual is
# then below it as well, far under the 1e-8 accuracy the checks need.
IMPROVEMENT_TOLERANCE = 1e-12
# Policy iteration on a finite MDP terminates in at most |L|^|S| steps but in practice in a handful; this cap
# only turns a bug (cycling) into an error instead of a hang.
MAX_POLICY_ITERATIONS = 1_000
DEFAULT_VALUE_ITERATION_TOLERANCE = 1e-12
DEFAULT_MAX_VALUE_ITERATIONS = 100_000

OUTPUT_FILE_MODE = 0o644

DEFAULT_P_MIN_GRID: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(11))


@dataclass(frozen=True)
class TheoryConfig:
    """Everything that defines the Figure-3 theory check; the computation is otherwise exact."""

    layout: tuple[str, ...] = FOUR_ROOMS_LAYOUT
    """Grid rows, ``#`` for wall and ``.`` for free; the border must be wall. Default: Sutton four-room."""

    goal: tuple[int, int] = (1, 11)
    """(row, col) of the goal cell; entering it pays ``goal_reward`` and ends the episode."""

    blocked_doorway: tuple[int, int] = (3, 6)
    """(row, col) of the cell walled off in the target world (default: top-left/top-right hallway)."""

    gamma: float = 0.95
    """Discount factor, in (0, 1)."""

    goal_reward: float = 1.0
    """Reward for entering the goal; must be positive so the goal is worth reaching."""

    termination_reward: float = 0.0
    """r_term(s) for every cell: value of the sink reached by a masked/blocked skill. Must be <= 0 so that
    terminating is never preferred to continuing -- the premise under which the mask is exact at p_min = 1."""

    p_min_grid: tuple[float, ...] = DEFAULT_P_MIN_GRID
    """Probabilities with which a skill reaches its intended cell; each in (0, 1]."""

    seed: int = 0
    """Seeds the uniform tie-breaking among equally valued skills in the greedy masked policy, so the
    reported gap does not depend on the arbitrary numbering of skill tokens."""

    def __post_init__(self) -> None:
        # YAML/JSON give lists; store tuples so the config stays hashable and immutable.
        object.__setattr__(self, "layout", tuple(self.layout))
        object.__setattr__(self, "goal", tuple(self.goal))
        object.__setattr__(self, "blocked_doorway", tuple(self.blocked_doorway))
        object.__setattr__(self, "p_min_grid", tuple(float(p) for p in self.p_min_grid))

        if not self.layout:
            raise ValueError("TheoryConfig.layout: must have at least one row")
        width = len(self.layout[0])
        for row_index, row in enumerate(self.layout):
            if len(row) != width:
                raise ValueError(
                    f"TheoryConfig.layout: row {row_index} has length {len(row)}, expected {width} "
                    "(all rows must be equally long)"
                )
            bad = set(row) - {WALL_CHAR, FREE_CHAR}
            if bad:
                raise ValueError(
                    f"TheoryConfig.layout: row {row_index} contains {sorted(bad)}; use only "
                    f"'{WALL_CHAR}' (wall) and '{FREE_CHAR}' (free)"
                )
        border = self.layout[0] + self.layout[-1] + "".join(row[0] + row[-1] for row in self.layout)
        if set(border) != {WALL_CHAR}:
            raise ValueError(
                "TheoryConfig.layout: the outer border must be all wall so moves stay on the grid"
            )
        for name in ("goal", "blocked_doorway"):
            cell = getattr(self, name)
            if len(cell) != 2 or not self._is_free(cell):
                raise ValueError(f"TheoryConfig.{name}: {cell} is not a free (row, col) cell of the layout")
        if self.goal == self.blocked_doorway:
            raise ValueError(
                f"TheoryConfig.blocked_doorway: {self.blocked_doorway} equals the goal; wall a different cell"
            )
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(
                f"TheoryConfig.gamma: {self.gamma} must lie in (0, 1) for the operator to contract"
            )
        if self.goal_reward <= 0.0:
            raise ValueError(f"TheoryConfig.goal_reward: {self.goal_reward} must be > 0")
        if self.termination_reward > 0.0:
            raise ValueError(
                f"TheoryConfig.termination_reward: {self.termination_reward} must be <= 0; a positive "
                "termination reward makes quitting attractive and breaks the p_min = 1 exactness premise"
            )
        if not self.p_min_grid:
            raise ValueError("TheoryConfig.p_min_grid: must contain at least one probability")
        for p in self.p_min_grid:
            if not 0.0 < p <= 1.0:
                raise ValueError(f"TheoryConfig.p_min_grid: {p} is not a probability in (0, 1]")

    def _is_free(self, cell: tuple[int, ...]) -> bool:
        row, col = cell
        return 0 <= row < len(self.layout) and 0 <= col < len(self.layout[0]) and (
            self.layout[row][col] == FREE_CHAR
        )


# --------------------------------------------------------------------------------------------------------
# Exact solvers for a generic finite skill-level MDP.
# Shapes: P (S, L, S) with rows summing to 1, R (S, L), r_term (S,), Q (S, L), mask (L,) or (S, L).
# --------------------------------------------------------------------------------------------------------


def _mask_matrix(mask: NDArray[Any], shape: tuple[int, int]) -> BoolArray:
    """Broadcast a skill mask ``(L,)`` (the paper's m in {0,1}^L) or a per-state mask ``(S, L)`` to (S, L)."""
    mask_array = np.asarray(mask).astype(bool)
    if mask_array.shape not in {(shape[1],), shape}:
        raise ValueError(f"mask has shape {mask_array.shape}; expected ({shape[1]},) or {shape}")
    return np.broadcast_to(mask_array, shape)


def masked_state_value(Q: FloatArray, mask: NDArray[Any], r_term: FloatArray) -> FloatArray:
    """V(s) = max_{z: m(z)=1} Q(s, z), or r_term(s) when no skill is feasible at s. Returns (S,)."""
    feasible = _mask_matrix(mask, Q.shape)
    best = np.where(feasible, Q, -np.inf).max(axis=1)
    return np.where(feasible.any(axis=1), best, r_term)


def _q_from_state_value(
    V: FloatArray, feasible: BoolArray, P: FloatArray, R: FloatArray, r_term: FloatArray, gamma: float
) -> FloatArray:
    backed_up = R + gamma * np.einsum("szt,t->sz", P, V)
    return np.where(feasible, backed_up, r_term[:, None])


def masked_bellman_operator(
    Q: FloatArray, mask: NDArray[Any], P: FloatArray, R: FloatArray, r_term: FloatArray, gamma: float
) -> FloatArray:
    """(T_m Q)(s,z) = m(z)[R(s,z) + gamma sum_s' P(s'|s,z) max_{z': m(z')=1} Q(s',z')] + (1-m(z)) r_term(s).

    Q (S, L), mask (L,) or (S, L), P (S, L, S), R (S, L), r_term (S,) -> (S, L). An empty feasible set at s'
    falls back to r_term(s').
    """
    feasible = _mask_matrix(mask, Q.shape)
    return _q_from_state_value(masked_state_value(Q, feasible, r_term), feasible, P, R, r_term, gamma)


def evaluate_policy(policy: IntArray, P: FloatArray, R: FloatArray, gamma: float) -> FloatArray:
    """Exact V^pi (S,) of a deterministic policy (S,) under dynamics P (S, L, S), rewards R (S, L)."""
    states = np.arange(P.shape[0])
    P_pi = P[states, policy]
    # numpy's stub types solve() as floating[Any] even for float64 inputs.
    return cast(FloatArray, np.linalg.solve(np.eye(P.shape[0]) - gamma * P_pi, R[states, policy]))


def _evaluate_masked_policy(
    policy: IntArray, feasible: BoolArray, P: FloatArray, R: FloatArray, r_term: FloatArray, gamma: float
) -> FloatArray:
    # States with no feasible skill take the value r_term(s) outright (the empty-max fallback).
    states = np.arange(P.shape[0])
    has_skill = cast(BoolArray, feasible.any(axis=1))  # feasible is (S, L), so this is an (S,) array
    system = np.eye(P.shape[0]) - gamma * P[states, policy] * has_skill[:, None]
    rhs = np.where(has_skill, R[states, policy], r_term)
    return cast(FloatArray, np.linalg.solve(system, rhs))  # float64 in, float64 out (see evaluate_policy)


def masked_fixed_point(
    mask: NDArray[Any], P: FloatArray, R: FloatArray, r_term: FloatArray, gamma: float
) -> FloatArray:
    """Exact fixed point Q_m = T_m Q_m (S, L), by policy iteration restricted to feasible skills."""
    feasible = _mask_matrix(mask, R.shape)
    states = np.arange(R.shape[0])
    has_skill = feasible.any(axis=1)
    # Warm start: one value-iteration sweep per state lets rewards reach every state, so policy iteration
    # starts near-greedy and needs a few linear solves instead of one per step of the MDP's diameter.
    Q = np.zeros(R.shape)
    for _ in range(R.shape[0]):
        Q = masked_bellman_operator(Q, feasible, P, R, r_term, gamma)
    policy = greedy_policy(Q, feasible)
    for _ in range(MAX_POLICY_ITERATIONS):
        V = _evaluate_masked_policy(policy, feasible, P, R, r_term, gamma)
        Q = _q_from_state_value(V, feasible, P, R, r_term, gamma)
        candidate = np.where(feasible, Q, -np.inf)
        best = np.where(has_skill, candidate.max(axis=1), 0.0)
        # Only switch on a clear improvement; switching on noise-level ties can make policy iteration cycle.
        improves = has_skill & (
            best > candidate[states, policy] + IMPROVEMENT_TOLERANCE * (1.0 + np.abs(best))
        )
        if not improves.any():
            return Q
        policy = np.where(improves, np.argmax(candidate, axis=1), policy)
    raise RuntimeError(f"masked policy iteration did not converge in {MAX_POLICY_ITERATIONS} iterations")


def masked_value_iteration(
    mask: NDArray[Any],
    P: FloatArray,
    R: FloatArray,
    r_term: FloatArray,
    gamma: float,
    tolerance: float = DEFAULT_VALUE_ITERATION_TOLERANCE,
    max_iterations: int = DEFAULT_MAX_VALUE_ITERATIONS,
) -> FloatArray:
    """Iterate T_m from Q = 0 until ||T_m Q - Q||_inf <= tolerance; a cross-check on masked_fixed_point."""
    Q = np.zeros(R.shape)
    for _ in range(max_iterations):
        Q_next = masked_bellman_operator(Q, mask, P, R, r_term, gamma)
        if np.max(np.abs(Q_next - Q)) <= tolerance:
            return Q_next
        Q = Q_next
    raise RuntimeError(f"masked value iteration did not reach {tolerance} in {max_iterations} iterations")


def optimal_value(P: FloatArray, R: FloatArray, gamma: float) -> FloatArray:
    """V* (S,) of the unmasked MDP (P, R); blocked skills must already be encoded in P and R."""
    all_feasible = np.ones(R.shape[1], dtype=bool)
    no_fallback = np.zeros(R.shape[0])  # never used: every state has a feasible skill
    return masked_fixed_point(all_feasible, P, R, no_fallback, gamma).max(axis=1)


def greedy_policy(Q: FloatArray, mask: NDArray[Any], rng: np.random.Generator | None = None) -> IntArray:
    """argmax over feasible skills of Q (S, L) -> (S,); ties broken uniformly by rng (lowest index if None).

    Where no skill is feasible every skill is equally a termination, so all are treated as tied.
    """
    feasible = _mask_matrix(mask, Q.shape)
    candidate = np.where(feasible, Q, -np.inf)
    best = candidate.max(axis=1, keepdims=True)
    tied = feasible & (candidate >= best - TIE_TOLERANCE * (1.0 + np.abs(best)))
    tied[~feasible.any(axis=1)] = True
    if rng is None:
        return np.argmax(tied, axis=1)
    return np.argmax(np.where(tied, rng.random(Q.shape), -1.0), axis=1)


# --------------------------------------------------------------------------------------------------------
# The four-room skill MDP and its blocked variant.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FourRoomsWorld:
    """Skill-level four-room MDP: S = len(cells) + 1 states (sink last), L = len(cells) skills.

    Skill z means "go to cell z"; see the module docstring for its dynamics.
    """

    cells: tuple[tuple[int, int], ...]
    """Free cells in row-major order; cell i is state i and skill i's target."""

    goal: int
    """State index of the goal cell."""

    doorway: int
    """State index of the cell walled off in the target world."""

    move_outcome: IntArray = field(repr=False)
    """(n_cells, 4): cell reached by each compass move (the same cell when the move hits a wall)."""

    skill_direction: IntArray = field(repr=False)
    """(n_cells, L): compass index that skill z's intended move takes from cell s; NO_DIRECTION if z is not
    a neighbour of s (the skill cannot be initiated there and is a no-op)."""

    goal_reward: float
    r_term: FloatArray = field(repr=False)
    """(S,) termination reward; zero at the sink, whose value is zero."""

    @property
    def n_states(self) -> int:
        return len(self.cells) + 1

    @property
    def n_skills(self) -> int:
        return len(self.cells)

    @property
    def sink(self) -> int:
        return len(self.cells)

    @property
    def blocking(self) -> BoolArray:
        """B (S, L): True where skill z's intended transition from s enters the walled doorway."""
        blocked = np.zeros((self.n_states, self.n_skills), dtype=bool)
        blocked[: self.sink, self.doorway] = self.skill_direction[:, self.doorway] != NO_DIRECTION
        return blocked

    @property
    def mask(self) -> BoolArray:
        """Skill mask m (L,): a skill token is kept iff it is blocked nowhere."""
        return ~cast(BoolArray, self.blocking.any(axis=0))  # (S, L) -> (L,)

    def source_dynamics(self, p_min: float) -> tuple[FloatArray, FloatArray]:
        """(P (S, L, S), R (S, L)) of the unchanged world, which the masked planner models."""
        sink = self.sink
        P = np.zeros((self.n_states, self.n_skills, self.n_states))
        cell_index, skill_index = np.nonzero(self.skill_direction != NO_DIRECTION)
        intended = self.skill_direction[cell_index, skill_index]
        slip = (1.0 - p_min) / NUM_SLIP_DIRECTIONS
        for direction in range(len(COMPASS_MOVES)):
            probability = np.where(intended == direction, p_min, slip)
            landing = self.move_outcome[cell_index, direction]
            np.add.at(P, (cell_index, skill_index, landing), probability)
        no_op_cell, no_op_skill = np.nonzero(self.skill_direction == NO_DIRECTION)
        P[no_op_cell, no_op_skill, no_op_cell] = 1.0
        # The goal and the sink are absorbing through the sink, so the goal reward is collected once.
        for terminal in (self.goal, sink):
            P[terminal] = 0.0
            P[terminal, :, sink] = 1.0
        R = self.goal_reward * P[:, :, self.goal]
        return P, R

    def blocked_dynamics(self, p_min: float) -> tuple[FloatArray, FloatArray]:
        """(P (S, L, S), R (S, L)) of the target world, where the doorway is a wall that ends the episode."""
        P, R = self.source_dynamics(p_min)
        sink, doorway = self.sink, self.doorway
        # The walled cell cannot be occupied; give it a well-defined (terminating) row anyway.
        P[doorway] = 0.0
        P[doorway, :, sink] = 1.0
        R[doorway] = self.r_term[doorway]
        # Slip outcomes into the wall fail: this is what the skill-level mask does not see.
        failing = P[:, :, doorway].copy()
        P[:, :, doorway] = 0.0
        P[:, :, sink] += failing
        R += failing * self.r_term[:, None]
        # Blocked skills cannot execute at all.
        blocked_state, blocked_skill = np.nonzero(self.blocking)
        P[blocked_state, blocked_skill] = 0.0
        P[blocked_state, blocked_skill, sink] = 1.0
        R[blocked_state, blocked_skill] = self.r_term[blocked_state]
        return P, R


def build_four_rooms(config: TheoryConfig) -> FourRoomsWorld:
    """Index the layout's free cells and precompute moves; dynamics are built per p_min on demand."""
    cells = tuple(
        (row, col)
        for row, line in enumerate(config.layout)
        for col, char in enumerate(line)
        if char == FREE_CHAR
    )
    index = {cell: i for i, cell in enumerate(cells)}
    n_cells = len(cells)
    move_outcome = np.empty((n_cells, len(COMPASS_MOVES)), dtype=np.int64)
    skill_direction = np.full((n_cells, n_cells), NO_DIRECTION, dtype=np.int64)
    for i, (row, col) in enumerate(cells):
        for direction, (d_row, d_col) in enumerate(COMPASS_MOVES):
            neighbour = index.get((row + d_row, col + d_col))
            move_outcome[i, direction] = i if neighbour is None else neighbour
            if neighbour is not None:
                skill_direction[i, neighbour] = direction
    r_term = np.append(np.full(n_cells, config.termination_reward), 0.0)
    return FourRoomsWorld(
        cells=cells,
        goal=index[config.goal],
        doorway=index[config.blocked_doorway],
        move_outcome=move_outcome,
        skill_direction=skill_direction,
        goal_reward=config.goal_reward,
        r_term=r_term,
    )


def value_gap(world: FourRoomsWorld, p_min: float, gamma: float, seed: int) -> float:
    """||V^{pi_m} - V*_blocked||_inf: pi_m is greedy for the masked fixed point on the source dynamics,
    evaluated (exactly) on the blocked dynamics. Since V^{pi_m} <= V*_blocked, this is the loss of optimality
    caused by planning with the mask instead of the true blocked dynamics."""
    P_source, R_source = world.source_dynamics(p_min)
    P_blocked, R_blocked = world.blocked_dynamics(p_min)
    Q_masked = masked_fixed_point(world.mask, P_source, R_source, world.r_term, gamma)
    # A fresh generator per p_min keeps each gap independent of which other p_min values are swept.
    policy = greedy_policy(Q_masked, world.mask, np.random.default_rng(seed))
    V_policy = evaluate_policy(policy, P_blocked, R_blocked, gamma)
    V_optimal = optimal_value(P_blocked, R_blocked, gamma)
    return float(np.max(np.abs(V_policy - V_optimal)))


def _write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write via a temp file in the target directory, then os.replace, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    temp_path = Path(handle.name)
    try:
        with handle:
            write(handle)
        # NamedTemporaryFile creates the file owner-only; results are meant to be shared like any output.
        os.chmod(temp_path, OUTPUT_FILE_MODE)
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def _plot(p_min: list[float], gap: list[float], config: TheoryConfig) -> Figure:
    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    order = np.argsort(p_min)
    axes.plot(np.asarray(p_min)[order], np.asarray(gap)[order], marker="o")
    axes.set_xlabel(r"$p_{\min}$ (probability a skill reaches its intended cell)")
    axes.set_ylabel(r"$\|V^{\pi_m} - V^*_{\mathrm{blocked}}\|_\infty$")
    axes.set_title(
        f"Masked-Bellman planning gap, four-room, doorway {config.blocked_doorway} walled "
        rf"($\gamma$={config.gamma})",
        fontsize="medium",
    )
    axes.set_ylim(bottom=0.0)
    axes.grid(alpha=0.3)
    return figure


def _json_ready(value: Any) -> Any:
    """Tuples become lists, so the returned dict equals what json.load gives back from the file."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def run_theory(
    config: TheoryConfig, json_path: Path | None, png_path: Path | None, provenance: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Sweep p_min, return {"p_min", "gap", "config"} (and ``provenance``, the block the caller made of where it ran,
    when given); optionally write it as JSON and plot it as PNG."""
    world = build_four_rooms(config)
    p_min = list(config.p_min_grid)
    gap = [value_gap(world, p, config.gamma, config.seed) for p in p_min]
    result: dict[str, Any] = {"p_min": p_min, "gap": gap, "config": _json_ready(dataclasses.asdict(config))}
    if provenance is not None:
        result["provenance"] = provenance
    if json_path is not None:
        text = json.dumps(result, indent=2)
        _write_atomically(Path(json_path), lambda handle: handle.write(text.encode()))
    if png_path is not None:
        figure = _plot(p_min, gap, config)
        _write_atomically(Path(png_path), lambda handle: figure.savefig(handle, format="png"))
    return result
