"""The Diffuser baseline: plans are inpainted with the start state and the goal, it learns the shape of its data,
round-trips exactly, and refuses bad configs and data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mstt.skills.diffuser import Diffuser, DiffuserConfig, TrajectoryData, train_diffuser
from mstt.skills.training import LoopSettings

TINY = DiffuserConfig(
    horizon=12, hidden=16, depth=2, norm_groups=8, cond_dim=16, timestep_embed_dim=8, train_timesteps=20,
    inference_steps=5, batch_size=32, steps=600, lr=2e-3, ema_decay=0.9, device="cpu",
)  # fmt: skip


def _line_episodes(count: int, steps: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Episodes moving in a straight line at a constant velocity, observations (x, y, vx, vy), actions (vx, vy)."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(count):
        start, velocity = rng.uniform(-1, 1, 2), rng.uniform(-0.1, 0.1, 2)
        positions = start + np.arange(steps + 1)[:, None] * velocity
        obs = np.concatenate([positions, np.repeat(velocity[None], steps + 1, 0)], axis=1)
        episodes.append({"observations": obs, "actions": np.repeat(velocity[None], steps, 0)})
    return episodes


@pytest.fixture(scope="module")
def trained() -> tuple[Diffuser, list[float]]:
    diffuser, report = train_diffuser(_line_episodes(64, 30, 0), TINY, settings=LoopSettings(progress=False))
    return diffuser, list(report.losses)


def test_a_plan_starts_at_the_state_and_ends_at_the_goal(trained: tuple[Diffuser, list[float]]) -> None:
    diffuser, _ = trained
    states = torch.tensor([[0.2, -0.3, 0.05, 0.0], [-0.5, 0.5, 0.0, -0.05]])
    goals = torch.tensor([[0.7, -0.3], [-0.5, -0.2]])
    plan = diffuser.plan(states, goals, generator=torch.Generator().manual_seed(0))
    assert plan.shape == (2, TINY.horizon, 6)
    torch.testing.assert_close(plan[:, 0, :4], states, atol=1e-5, rtol=0)
    torch.testing.assert_close(plan[:, -1, :2], goals, atol=1e-5, rtol=0)


def test_it_learns_to_head_for_the_goal(trained: tuple[Diffuser, list[float]]) -> None:
    diffuser, losses = trained
    assert losses[-1] < 0.5 * losses[0]
    for goal in ([0.55, 0.55], [-0.55, -0.55]):
        velocity = [g / (TINY.horizon - 1) for g in goal]  # the data's episodes move at a constant velocity
        states = torch.tensor([[0.0, 0.0, *velocity]]).repeat(8, 1)
        plan = diffuser.plan(states, torch.tensor([goal]).repeat(8, 1), generator=torch.Generator().manual_seed(1))
        middle = plan[:, TINY.horizon // 2, :2].mean(0)
        # halfway through, the plans have left the start towards their goal, not away from it
        assert float(middle @ torch.tensor(goal)) > 0.1, (goal, middle)


def test_save_and_load_give_the_same_plans(trained: tuple[Diffuser, list[float]], tmp_path: Path) -> None:
    diffuser, _ = trained
    diffuser.save_pretrained(tmp_path / "diffuser")
    loaded = Diffuser.from_pretrained(tmp_path / "diffuser")
    states, goals = torch.zeros(3, 4), torch.ones(3, 2) * 0.3
    a = diffuser.plan(states, goals, generator=torch.Generator().manual_seed(2))
    b = loaded.plan(states, goals, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("horizon", 1), ("inference_steps", 300), ("prediction", "v"), ("ema_decay", 1.0), ("pos_stop", 0)],
)
def test_bad_configs_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        DiffuserConfig(**{field: value})  # type: ignore[arg-type]


def test_episodes_shorter_than_the_horizon_are_refused() -> None:
    with pytest.raises(ValueError, match="horizon 12"):
        TrajectoryData.from_episodes(_line_episodes(2, 5, 0), 12)


def test_windows_stay_inside_their_episode() -> None:
    data = TrajectoryData.from_episodes(_line_episodes(3, 20, 0), 12)
    assert len(data.starts) == 3 * (20 - 12 + 1)
    ends = data.starts + 12
    assert all(end <= (start // 20 + 1) * 20 for start, end in zip(data.starts, ends))


def test_plans_refuse_goals_of_another_size(trained: tuple[Diffuser, list[float]]) -> None:
    diffuser, _ = trained
    with pytest.raises(ValueError, match="goals"):
        diffuser.plan(torch.zeros(1, 4), torch.zeros(1, 3))


def test_a_strided_plan_fills_every_step_between_its_points() -> None:
    config = DiffuserConfig(**{**vars(TINY), "horizon": 5, "stride": 3, "steps": 0})
    diffuser = train_diffuser(_line_episodes(4, 30, 0), config, settings=LoopSettings(progress=False))[0]
    states, goals = torch.tensor([[0.1, 0.2, 0.0, 0.0]]), torch.tensor([[0.4, -0.2]])
    plan = diffuser.plan(states, goals, generator=torch.Generator().manual_seed(0))
    assert plan.shape == (1, diffuser.span, 6) and diffuser.span == 13
    torch.testing.assert_close(plan[0, 0, :4], states[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(plan[0, -1, :2], goals[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(plan[0, 1], (2 * plan[0, 0] + plan[0, 3]) / 3, atol=1e-5, rtol=0)  # linear in between
    data = TrajectoryData.from_episodes(_line_episodes(2, 20, 0), 5, 3)
    assert len(data.starts) == 2 * (20 - 13 + 1)
