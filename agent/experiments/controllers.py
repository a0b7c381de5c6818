"""Zero-shot evaluation in the target worlds: every method runs many episodes at once in a gymnasium
vector env (one batched planning call per decision), and the metrics land in one JSON.

Methods differ only in the mask and the critic they plan with (plus BC, which does not plan):
mstt (demo mask), unmasked (all skills), oracle_mask (from the true walls or zones), random_mask
(random tokens, as many as the demo's), mask_only (demo mask, constant critic). mstt_dds plans like
mstt but executes each chosen candidate with a DDS action decoder (closed loop) instead of tracking it.
"""

from __future__ import annotations

import importlib.util
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

from mstt.agent.core.io import RESULT_FILE_MODE
from mstt.agent.experiments.pixels import TRUE_POSITION_KEY, EgocentricTask, LocalizedObservation, PixelObservation
from mstt.agent.worlds import COLLISION_KEY, Task
from mstt.skills.dds import DDSSkills
from mstt.skills.diffuser import Diffuser
from mstt.skills.localizer import Localizer, PoseFilter
from mstt.skills.windows import arc_lengths, points_at_arc, position_windows

Z_95 = 1.959963984540054
"""Normal quantile of the two-sided 95% interval."""


@dataclass(frozen=True)
class Outcome:
    """One episode's result."""

    success: bool
    """Reached the goal at some step."""
    episode_return: float
    """Sum of the env's own (sparse) reward."""
    failed: bool
    """Touched what the variant forbids at some step."""
    cost: float
    """Steps spent touching it."""
    steps_to_goal: int | None
    path: np.ndarray | None = None
    """(T + 1, P) achieved positions, when the rollout recorded them."""
    collisions: int | None = None
    """Steps the body was stopped by a wall or furniture (info[COLLISION_KEY]); None where the env does not say."""


@dataclass(frozen=True)
class MethodResult:
    goal_rate: float
    goal_ci95: tuple[float, float]
    return_mean: float
    failure_rate: float
    cost_mean: float
    steps_mean: float | None
    """Mean steps to the goal over successful episodes (None when none succeeded)."""
    mask_size: int | None
    fallback_rate: float | None = None
    """Share of decisions where no candidate survived the mask."""
    collisions_mean: float | None = None
    """Mean steps per episode the body was stopped by a wall or furniture (None where the env does not report it)."""


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval: sensible at rates near 0 and 1, unlike the normal approximation."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # at 0 (or n) successes the bound is exactly 0 (or 1); the formula leaves a rounding residue there
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def summarise(outcomes: list[Outcome], mask_size: int | None, fallback_rate: float | None) -> MethodResult:
    n = len(outcomes)
    wins = sum(o.success for o in outcomes)
    steps = [o.steps_to_goal for o in outcomes if o.steps_to_goal is not None]
    collisions = [o.collisions for o in outcomes if o.collisions is not None]
    return MethodResult(
        goal_rate=wins / n,
        goal_ci95=wilson_interval(wins, n),
        return_mean=float(np.mean([o.episode_return for o in outcomes])),
        failure_rate=float(np.mean([o.failed for o in outcomes])),
        cost_mean=float(np.mean([o.cost for o in outcomes])),
        steps_mean=float(np.mean(steps)) if steps else None,
        mask_size=mask_size,
        fallback_rate=fallback_rate,
        collisions_mean=float(np.mean(collisions)) if collisions else None,
    )


class Controller(Protocol):
    def reset(self, obs: dict[str, np.ndarray]) -> None: ...

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Dict of (E, ...) observations -> (E, A) actions."""
        ...

    def planned_states(self, env: int) -> np.ndarray | None:
        """(H, S) the states env ``env``'s current plan passes through, for a video to draw; None when the
        controller has no plan of its own (a flat policy, the demo tracker) or has not planned yet."""
        ...


class _Decisions:
    """What the planning controllers share: one batched plan call for the envs that decide, and the count of
    decisions where no candidate's skill was permitted (the planner fell back)."""

    def __init__(
        self, plan: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object], mask: torch.Tensor,
        device: torch.device,
    ) -> None:  # fmt: skip
        self.plan, self.mask, self.device = plan, mask.to(device), device
        self.decisions = self.fallbacks = 0

    def _decide(self, obs: dict[str, np.ndarray]) -> Any:
        """Dict of (E, ...) observations -> the planner's Plan for every env."""
        n = obs["observation"].shape[0]
        plan = self.plan(
            torch.as_tensor(obs["observation"], dtype=torch.float32, device=self.device),
            self.mask.expand(n, -1),
            torch.as_tensor(obs["desired_goal"], dtype=torch.float32, device=self.device),
        )
        self.decisions += n
        self.fallbacks += int(plan.used_fallback.sum())
        return plan

    @property
    def fallback_rate(self) -> float | None:
        return self.fallbacks / self.decisions if self.decisions else None


class PlanController(_Decisions):
    """Hierarchical agent: plan a skill for the envs that are due, in one batched call, track it, decide again
    every `replan_every` steps, or `replan_after_fallback` steps after a decision that fell back.

    Every env keeps its own schedule; the envs due at a step share one planning call (all of them when the
    schedules agree, which they do unless a fallback shortened one).

    Each step tracks the plan's state k + 1 with ``task.track``, or, where the task has a ``track_plan`` method
    ((E, S) observations, (E, H, S) planned states, (E,) plan steps executed, (E, G) desired goals -> actions), hands
    it the whole plan and the goal: a body that cannot follow the plan's timing, such as the house's turn-then-step
    one, pursues its path instead; the maze tracks state k + 1 but brakes onto a goal its plan passes close by."""

    def __init__(
        self,
        task: Task,
        plan: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object],
        mask: torch.Tensor,
        replan_every: int,
        device: torch.device,
        replan_after_fallback: int | None = None,
    ) -> None:
        super().__init__(plan, mask, device)
        self.task, self.replan_every = task, replan_every
        self._track_plan: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = getattr(
            task, "track_plan", None
        )
        """The task's whole-plan tracker where it has one (the house), looked up once rather than every step."""
        self.replan_after_fallback = replan_after_fallback or replan_every
        self._trajectory: np.ndarray | None = None
        """(E, H, S + A) each env's current plan."""
        self._k = np.zeros(0, dtype=int)
        """(E,) steps of its plan each env has executed."""
        self._budget = np.zeros(0, dtype=int)
        """(E,) steps each env executes before it decides again."""
        self._state_dim = 0

    def reset(self, obs: dict[str, np.ndarray]) -> None:
        self._trajectory = None

    def planned_states(self, env: int) -> np.ndarray | None:
        if self._trajectory is None:
            return None
        return self._trajectory[env, :, : self._state_dim]

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state = obs["observation"]
        n, state_dim = state.shape
        self._state_dim = state_dim
        if self._trajectory is None or self._trajectory.shape[0] != n:
            self._trajectory = None
            self._k, self._budget = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
        due = self._k >= self._budget
        if due.any():
            # One host copy per decision for the envs that are due; nothing per candidate.
            plan = self._decide({key: value[due] for key, value in obs.items()})
            chosen = plan.trajectory.cpu().numpy()
            if self._trajectory is None:
                self._trajectory = np.zeros((n, *chosen.shape[1:]), dtype=chosen.dtype)
            self._trajectory[due] = chosen
            fell_back = plan.used_fallback.cpu().numpy()
            self._budget[due] = np.where(fell_back, self.replan_after_fallback, self.replan_every)
            self._k[due] = 0
        assert self._trajectory is not None
        k = np.minimum(self._k, self._trajectory.shape[1] - 2)
        self._k += 1
        if self._track_plan is not None:  # a task that tracks the whole plan and the goal (house, maze)
            return self._track_plan(state, self._trajectory[:, :, :state_dim], k, obs["desired_goal"])
        rows = np.arange(n)
        return self.task.track(state, self._trajectory[rows, k + 1, :state_dim], self._trajectory[rows, k, state_dim:])


class SkillExecutorController(_Decisions):
    """mstt's plans, executed closed loop by DDS skills instead of tracked.

    At each decision every env's chosen (H, S + A) candidate is cut to its first H_dds steps and encoded into
    one DDS skill (a single batched encoder call); then, for H_dds steps, each action comes from the DDS
    decoder given the env's current observation and that skill's code (one batched decoder call per step).
    Plans, codes and the decoder's noise stay on ``skills``' device; only the actions are copied to the host.
    """

    def __init__(
        self,
        plan: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object],
        mask: torch.Tensor,
        skills: DDSSkills,
        seed: int = 0,
    ) -> None:
        super().__init__(plan, mask, skills.decoder.device)
        self.skills, self.seed = skills.eval(), seed
        self.chosen: list[torch.Tensor] = []
        """(E,) DDS skill of every decision, on the device."""
        self._codes: torch.Tensor | None = None
        self._plans: torch.Tensor | None = None
        """(E, H, S + A) the candidates chosen at the last decision, on the device."""
        self._k = 0
        self._episode = 0
        self._noise = torch.Generator(device=self.device).manual_seed(seed)

    @property
    def horizon(self) -> int:
        """H_dds: steps each encoded skill is executed before the next decision."""
        return self.skills.horizon

    def reset(self, obs: dict[str, np.ndarray]) -> None:
        """Forget the current skills; reseed the decoder's noise per batch of episodes (reproducible)."""
        self._codes, self._plans, self._k = None, None, 0
        self._noise = torch.Generator(device=self.device).manual_seed(self.seed + self._episode)
        self._episode += 1

    def planned_states(self, env: int) -> np.ndarray | None:
        if self._plans is None:
            return None
        return self._plans[env, :, : self.skills.state_dim].cpu().numpy()

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state = torch.as_tensor(obs["observation"], dtype=torch.float32, device=self.device)  # (E, S)
        if self._codes is None or self._k >= self.horizon or self._codes.shape[0] != state.shape[0]:
            trajectory = self._decide(obs).trajectory.to(self.device)  # (E, H, S + A)
            width = self.skills.state_dim + self.skills.action_dim
            if trajectory.shape[1] < self.horizon or trajectory.shape[2] != width:
                raise ValueError(
                    f"planned candidates are {tuple(trajectory.shape[1:])} (H, S + A); the DDS executor needs at "
                    f"least {self.horizon} steps of {width} channels (executor_dds.encoder.horizon, source data)"
                )
            self._plans = trajectory
            skills = self.skills.encoder.encode(trajectory[:, : self.horizon])  # (E,)
            self._codes = self.skills.encoder.code_vectors(skills)  # (E, code_dim)
            self.chosen.append(skills)
            self._k = 0
        self._k += 1
        actions = self.skills.decoder.sample(state, self._codes, generator=self._noise)  # (E, A)
        return actions.cpu().numpy()


FOLLOW_POINTS_PER_LOOKAHEAD = 10
"""Resolution of the path a DemoTracker follows: points per lookahead distance."""
FOLLOW_SEARCH_LOOKAHEADS = 2.0
"""A DemoTracker looks for its nearest path point at most this many lookaheads past its progress, so a route that
loops back on itself is followed in order rather than short-cut."""


class DemoTracker:
    """The demo_tracker baseline, with no learned part: pure pursuit along the demo's route, through the task's own
    tracker (each env aims ``task.follow_lookahead`` ahead of its progress along the route).

    Each env follows the stretch of the route from the point nearest its start to the point nearest its goal, then
    straight on to the goal; when the goal lies behind the start on the route, it follows the route backwards if the
    task is reversible. A route with breaks is followed straight across them: nothing else is known there."""

    def __init__(self, task: Task, route: np.ndarray, action_dim: int, reversible: bool) -> None:
        self.task, self.route, self.action_dim = task, np.asarray(route, dtype=float), action_dim
        self.reversible = reversible
        self.fallback_rate = None
        self._paths: list[tuple[np.ndarray, np.ndarray]] = []
        """Per env: (M, P) resampled path to its goal and (M,) arc lengths."""
        self._progress = np.zeros(0)

    def _path(self, start: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """(K, P) what an env starting at ``start`` follows to ``goal``."""
        route = self.route
        first = int(np.argmin(np.linalg.norm(route - start, axis=1)))
        last = int(np.argmin(np.linalg.norm(route - goal, axis=1)))
        if last >= first:
            stretch = route[first : last + 1]
        elif self.reversible:
            stretch = route[last : first + 1][::-1]
        else:
            stretch = route[first:]
        return np.vstack([start[None], stretch, goal[None]])

    def reset(self, obs: dict[str, np.ndarray]) -> None:
        pos_dim = self.route.shape[1]
        step = self.task.follow_lookahead / FOLLOW_POINTS_PER_LOOKAHEAD
        self._paths = []
        for state, goal in zip(obs["observation"], obs["desired_goal"]):
            path = self._path(state[:pos_dim], goal[:pos_dim])
            total = arc_lengths(path)[-1]
            s = np.append(np.arange(0.0, total, step), total)
            self._paths.append((points_at_arc(path, s), s))
        self._progress = np.zeros(len(self._paths))

    def planned_states(self, env: int) -> np.ndarray | None:
        return None  # the route it follows is the demo's

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state = obs["observation"]
        pos_dim = self.route.shape[1]
        lookahead = self.task.follow_lookahead
        targets = np.empty((len(state), pos_dim))
        for e, (path, s) in enumerate(self._paths):
            window = (s >= self._progress[e]) & (s <= self._progress[e] + FOLLOW_SEARCH_LOOKAHEADS * lookahead)
            candidates = np.flatnonzero(window)
            nearest = candidates[np.argmin(np.linalg.norm(path[candidates] - state[e, :pos_dim], axis=1))]
            self._progress[e] = max(self._progress[e], s[nearest])
            aim = min(self._progress[e] + lookahead, s[-1])
            targets[e] = [np.interp(aim, s, path[:, d]) for d in range(pos_dim)]
        next_state = np.zeros_like(state)
        next_state[:, :pos_dim] = targets  # at rest at the aim point: the tracker brakes as it closes in
        return self.task.track(state, next_state, np.zeros((len(state), self.action_dim)))


@dataclass(frozen=True)
class WholePlan:
    """A plan with no skills to fall back from: what PlanController reads of a planner's answer."""

    trajectory: torch.Tensor
    """(E, H, S + A)."""
    used_fallback: torch.Tensor
    """(E,) all False."""


def diffuser_planner(diffuser: Diffuser, seed: int) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], WholePlan]:
    """Diffuser as a PlanController's planner: (E, S) states, a mask it ignores, (E, G) goal positions -> a whole
    plan from each state to its goal, drawn from a stream seeded by ``seed``."""
    noise = torch.Generator(device=diffuser.device).manual_seed(seed)

    def plan(states: torch.Tensor, mask: torch.Tensor, goals: torch.Tensor) -> WholePlan:
        trajectory = diffuser.plan(states, goals, generator=noise)
        return WholePlan(trajectory, torch.zeros(len(states), dtype=torch.bool, device=trajectory.device))

    return plan


def tensor_policy(
    act: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A torch policy on the CPU, (B, S), (B, G) -> (B, A), as the numpy policy PolicyController calls."""

    def numpy_act(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        obs_t, goal_t = torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(goal, dtype=torch.float32)
        return act(obs_t, goal_t).numpy()

    return numpy_act


class PolicyController:
    """A flat policy (BC): (observation, goal) -> action."""

    def __init__(self, act: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        self._act = act
        self.fallback_rate = None

    def reset(self, obs: dict[str, np.ndarray]) -> None:
        pass

    def planned_states(self, env: int) -> np.ndarray | None:
        return None

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self._act(obs["observation"], obs["desired_goal"])


def action_width(space: gym.Space) -> int:
    """Channels of one action as the skills see it: a Box's size, or n for a Discrete(n) space, whose actions the
    data gives as one-hot rows (agent/worlds/data.py)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(space.shape[0])


def env_actions(space: gym.Space, actions: np.ndarray) -> np.ndarray:
    """A controller's (E, ...) actions as the vector env of single action space ``space`` takes them: in a
    Discrete(n) world, (E, n) rows (BC's or a DDS decoder's outputs, learned from one-hot actions) become the (E,)
    index of their largest entry; (E,) integers (a task's tracker) and every other space's actions pass as they are."""
    if isinstance(space, gym.spaces.Discrete) and np.ndim(actions) == 2:
        return np.asarray(actions).argmax(axis=1) + int(space.start)
    return actions


def make_vector_env(
    task: Task,
    n_envs: int,
    observation: str = "state",
    render_mode: str | None = None,
    localizer: Localizer | None = None,
    pose_filter: PoseFilter | None = None,
) -> gym.vector.SyncVectorEnv:
    """One vector env per map, reused for every method and episode (each maze env writes an XML).

    ``observation``: "state" (the simulator's own observation; in the house, GPS + compass) or "pixels" (the agent
    sees rendered frames only; see agent/experiments/pixels.py): with a ``localizer``, the egocentric frames it reads,
    fused over steps by ``pose_filter`` (default: PoseFilter()) (the house), else the top-down frame read by perception
    (the maze). ``render_mode``: how state-observation envs render ("rgb_array" for a video)."""
    if observation == "state":
        return gym.vector.SyncVectorEnv([lambda: task.make_env(render_mode=render_mode) for _ in range(n_envs)])
    if observation == "pixels" and localizer is not None:
        egocentric, fuse = cast(EgocentricTask, task), pose_filter or PoseFilter()
        return gym.vector.SyncVectorEnv(
            [lambda: LocalizedObservation(task.make_env(render_mode="rgb_array"), egocentric, localizer, fuse)
             for _ in range(n_envs)]
        )  # fmt: skip
    if observation == "pixels":
        return gym.vector.SyncVectorEnv(
            [lambda: PixelObservation(task.make_env(render_mode="rgb_array"), task) for _ in range(n_envs)]
        )
    raise ValueError(f"observation must be 'state' or 'pixels', got {observation!r}")


VIDEO_EVERY = 4
"""Record every k-th step of an episode in its video (the full frame rate makes large files and adds nothing)."""
VIDEO_FPS = 25


@dataclass
class Video:
    """Frames of one env: its start, then after every ``every``-th step of the episode (the first step included)."""

    render: Callable[[], np.ndarray]
    """() -> (H, W, 3) the env's current frame."""
    every: int = VIDEO_EVERY
    frames: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class Filming:
    """Which episodes of a rollout become videos, and how: the first ``episodes`` episodes (episode i is env
    i % E of batch i // E, reset with seed + i), each frame made by ``render`` and each video handed to ``save``.

    Filming only renders: the episodes, and so the numbers, are those of a rollout without it."""

    episodes: int
    render: Callable[[int], np.ndarray]
    """env index -> (H, W, 3) that env's current frame, with whatever is drawn over it."""
    save: Callable[[int, list[np.ndarray]], object]
    """(episode index, frames) -> anything; called once per filmed episode when it ends."""
    every: int = VIDEO_EVERY


def mp4_available() -> bool:
    """Whether imageio can write MP4 here (its ffmpeg plugin, package imageio-ffmpeg, is installed)."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def write_video(frames: Sequence[np.ndarray], path: str | Path, fps: float = VIDEO_FPS) -> Path:
    """Write (H, W, 3) uint8 frames as an animated GIF, or as an MP4 when ``path`` ends in .mp4 and imageio's ffmpeg
    plugin is installed (else as the GIF of the same name); whole or not at all. Returns the path written.

    The one video writer: `mstt run`'s episode and `mstt eval --video`'s episodes alike."""
    path = Path(path)
    if path.suffix.lower() == ".mp4" and not mp4_available():
        path = path.with_suffix(".gif")
    if not frames:
        raise ValueError(f"video {path}: no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        if path.suffix.lower() == ".mp4":
            imageio.mimsave(tmp, list(frames), fps=fps)
        else:
            imageio.mimsave(tmp, list(frames), duration=1000 / fps, loop=0)
        os.chmod(tmp, RESULT_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def play_episodes(
    task: Task,
    venv: gym.vector.VectorEnv,
    controller: Controller,
    obs: dict[str, np.ndarray],
    info: dict[str, Any],
    record: bool = False,
    violation: Callable[[np.ndarray], np.ndarray] | None = None,
    videos: Sequence[Video] = (),
) -> list[Outcome]:
    """Play one episode in every env of ``venv``, from its current (just reset) state ``obs``/``info``: the task's
    full length (continuing task), all envs in lockstep. The one place an episode is stepped.

    ``record`` keeps each episode's achieved positions; ``violation`` ((E, P) positions -> (E,) bool, default the
    task's) says what counts as a failure; each of ``videos`` collects the frames of one env (its start frame is
    rendered after the controller's reset)."""
    n_envs = venv.num_envs
    violation = violation or task.violation
    controller.reset(obs)
    for video in videos:
        video.frames.append(video.render())
    success = np.zeros(n_envs, dtype=bool)
    first = np.full(n_envs, -1)
    returns = np.zeros(n_envs)
    failed = np.zeros(n_envs, dtype=bool)
    cost = np.zeros(n_envs)
    collisions = np.zeros(n_envs, dtype=int)
    reports_collisions = False
    paths = [_true_position(obs, info)] if record else []
    for t in range(task.config.episode_steps):
        obs, reward, _, _, info = venv.step(env_actions(venv.single_action_space, controller.act(obs)))
        position = _true_position(obs, info)
        if record:
            paths.append(position)
        returns += reward
        hit = np.asarray(info[task.success_key], dtype=bool)
        first[hit & ~success] = t + 1
        success |= hit
        bad = violation(position)
        failed |= bad
        cost += bad
        if COLLISION_KEY in info:
            reports_collisions = True
            collisions += np.asarray(info[COLLISION_KEY], dtype=bool)
        for video in videos:
            if t % video.every == 0:
                video.frames.append(video.render())
    stacked = np.stack(paths, axis=1) if record else None  # (E, T + 1, P)
    return [
        Outcome(
            success=bool(success[e]),
            episode_return=float(returns[e]),
            failed=bool(failed[e]),
            cost=float(cost[e]),
            steps_to_goal=int(first[e]) if success[e] else None,
            path=stacked[e] if stacked is not None else None,
            collisions=int(collisions[e]) if reports_collisions else None,
        )
        for e in range(n_envs)
    ]


def rollout(
    task: Task,
    venv: gym.vector.VectorEnv,
    controller: Controller,
    episodes: int,
    seed: int,
    progress: bool = False,
    desc: str = "episodes",
    record: bool = False,
    filming: Filming | None = None,
) -> list[Outcome]:
    """Run `episodes` episodes, `venv.num_envs` at a time, each batch reset with the next seeds; `record` keeps
    each episode's achieved positions; `filming` turns the first episodes into videos."""
    n_envs = venv.num_envs
    outcomes: list[Outcome] = []
    bar = tqdm(total=episodes, desc=desc, disable=not progress, leave=False)
    batch = 0
    while len(outcomes) < episodes:
        obs, info = venv.reset(seed=seed + batch * n_envs, options=task.reset_options())
        batch += 1
        first, wanted = len(outcomes), episodes - len(outcomes)
        videos: list[Video] = []
        if filming is not None:  # env e of this batch plays episode first + e
            filmed = max(0, min(n_envs, wanted, filming.episodes - first))
            videos = [Video(partial(filming.render, e), filming.every) for e in range(filmed)]
        played = play_episodes(task, venv, controller, obs, info, record, videos=videos)
        for e, video in enumerate(videos):
            assert filming is not None
            filming.save(first + e, video.frames)
        outcomes.extend(played[:wanted])
        bar.update(min(n_envs, episodes - bar.n))
    bar.close()
    return outcomes


def _true_position(obs: dict[str, np.ndarray], info: dict) -> np.ndarray:
    """(E, P) the simulator's positions: from info in pixel mode (the agent's own are estimates)."""
    return np.array(info[TRUE_POSITION_KEY] if TRUE_POSITION_KEY in info else obs["achieved_goal"], dtype=float)


def result_dict(result: MethodResult) -> dict:
    data = asdict(result)
    data["goal_ci95"] = list(result.goal_ci95)
    return data


def oracle_mask(
    target: Task, positions: list[np.ndarray], tokens: list[np.ndarray], horizon: int,
    num_skills: int, tolerance: float,
) -> torch.Tensor:  # fmt: skip
    """Tokens whose source-data windows (almost) never leave what a perfect demo of the target world covers:
    the open route's cells where the task defines them (``off_route``, maze), else never touching what the
    target forbids (``violation``, e.g. a Fetch zone). (L,) bool."""

    seen = np.zeros(num_skills)
    bad = np.zeros(num_skills)
    for pos, tok in zip(positions, tokens):
        windows = position_windows(pos, horizon, 1)[: len(tok)]
        violating = getattr(target, "off_route", target.violation)(windows).any(axis=1)
        np.add.at(seen, tok, 1)
        np.add.at(bad, tok, violating)
    feasible = (seen > 0) & (bad <= tolerance * np.maximum(seen, 1))
    return torch.as_tensor(feasible)


def random_mask(size: int, num_skills: int, seed: int) -> torch.Tensor:
    """`size` tokens drawn uniformly without replacement: a sanity floor for the demo mask."""
    mask = torch.zeros(num_skills, dtype=torch.bool)
    chosen = np.random.default_rng(seed).choice(num_skills, size=min(size, num_skills), replace=False)
    mask[torch.as_tensor(chosen)] = True
    return mask
