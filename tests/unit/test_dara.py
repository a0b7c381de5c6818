"""DARA's domain classifiers: they learn the dynamics gap of a toy shift, round-trip exactly, refuse bad configs and
mismatched data, and the reward augmentation respects eta and the clip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mstt.skills.dara import DARAConfig, DARAReport, DomainClassifiers, augment_rewards, train_domain_classifiers
from mstt.skills.training import LoopSettings

SOURCE_GAIN, TARGET_GAIN = 1.0, 0.5
"""The toy shift: s' = s + gain * a in each domain."""
QUICK = DARAConfig(hidden=64, layers=2, lr=1e-3, batch_size=128, steps=400, input_noise=0.1, device="cpu")


def _transitions(count: int, gain: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, size=(count, 2)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(count, 2)).astype(np.float32)
    return {"observations": obs, "actions": actions, "next_observations": obs + gain * actions}


@pytest.fixture(scope="module")
def trained() -> tuple[DomainClassifiers, DARAReport]:
    source = _transitions(2000, SOURCE_GAIN, seed=0)
    target = _transitions(500, TARGET_GAIN, seed=1)
    return train_domain_classifiers(source, target, QUICK, settings=LoopSettings(progress=False))


def _gap(classifiers: DomainClassifiers, data: dict[str, np.ndarray]) -> np.ndarray:
    tensors = (torch.as_tensor(data[k]) for k in ("observations", "actions", "next_observations"))
    return classifiers.reward_gap(*tensors).numpy()


def test_gap_penalises_source_transitions_the_target_would_not_produce(
    trained: tuple[DomainClassifiers, DARAReport],
) -> None:
    classifiers, _ = trained
    # Fresh (s, a) pairs, each followed once by the target's and once by the source's dynamics.
    target_like = _transitions(1000, TARGET_GAIN, seed=2)
    source_like = _transitions(1000, SOURCE_GAIN, seed=2)
    large = np.linalg.norm(source_like["actions"], axis=1) > 0.7  # where the two dynamics differ most
    gap_target, gap_source = _gap(classifiers, target_like), _gap(classifiers, source_like)
    assert gap_target.mean() > 0
    assert gap_source[large].mean() < gap_target[large].mean() - 2.0


def test_transition_classifier_beats_chance(trained: tuple[DomainClassifiers, DARAReport]) -> None:
    _, report = trained
    assert (report.sas_accuracy_source + report.sas_accuracy_target) / 2 > 0.7
    # (s, a) come from one distribution in both domains: only (s, a, s') tells them apart.
    assert report.mean_gap_source < report.mean_gap_target
    assert np.isfinite([report.sas_loss, report.sa_loss]).all() and report.steps == QUICK.steps


def test_save_load_round_trip_is_exact(trained: tuple[DomainClassifiers, DARAReport], tmp_path: Path) -> None:
    classifiers, _ = trained
    classifiers.save_pretrained(tmp_path / "dara")
    loaded = DomainClassifiers.from_pretrained(tmp_path / "dara")
    data = _transitions(300, SOURCE_GAIN, seed=3)
    assert loaded.config == classifiers.config
    np.testing.assert_array_equal(_gap(loaded, data), _gap(classifiers, data))


@pytest.mark.parametrize(
    ("field", "value"),
    [("hidden", 0), ("layers", 1.5), ("lr", 0.0), ("batch_size", -1), ("steps", True), ("input_noise", -0.1),
     ("eta", float("nan")), ("gap_clip", 0.0)],
)  # fmt: skip
def test_config_rejects_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"DARAConfig\.{field} .*{value!r}"):
        DARAConfig(**{field: value})


def test_gap_clip_may_be_off() -> None:
    assert DARAConfig(gap_clip=None).gap_clip is None


def test_mismatched_dims_name_both_datasets() -> None:
    source = _transitions(10, SOURCE_GAIN, seed=0)
    target = _transitions(10, TARGET_GAIN, seed=1)
    target["actions"] = np.zeros((10, 3), np.float32)
    with pytest.raises(ValueError, match=r"source actions have shape \(10, 2\) but target actions .*\(10, 3\)"):
        train_domain_classifiers(source, target, QUICK, progress=False)


def test_empty_dataset_is_named() -> None:
    empty = {k: np.zeros((0, 2), np.float32) for k in ("observations", "actions", "next_observations")}
    with pytest.raises(ValueError, match=r"target transitions are empty.*\(0, 2\)"):
        train_domain_classifiers(_transitions(10, SOURCE_GAIN, seed=0), empty, QUICK, progress=False)


def _untrained(gap_clip: float | None) -> DomainClassifiers:
    torch.manual_seed(0)
    classifiers = DomainClassifiers(DARAConfig(hidden=16, gap_clip=gap_clip), obs_dim=2, act_dim=2).eval()
    with torch.no_grad():  # large weights: logits far beyond the clip
        for parameter in classifiers.parameters():
            parameter.mul_(20.0)
    return classifiers


def test_zero_eta_leaves_rewards_unchanged() -> None:
    data = _transitions(100, SOURCE_GAIN, seed=4)
    rewards = np.random.default_rng(5).normal(size=100)
    augmented = augment_rewards(_untrained(None), **data, rewards=rewards, eta=0.0, batch=7)
    np.testing.assert_array_equal(augmented, rewards)
    assert augmented.dtype == rewards.dtype


def test_augmentation_is_bounded_by_eta_times_clip() -> None:
    data = _transitions(100, SOURCE_GAIN, seed=4)
    rewards = np.random.default_rng(5).normal(size=100).astype(np.float32)
    classifiers, eta = _untrained(0.5), 0.3
    augmented = augment_rewards(classifiers, **data, rewards=rewards, eta=eta, batch=7)
    change = np.abs(augmented - rewards)
    assert change.max() <= eta * 0.5 + 1e-6
    assert change.max() > 0.9 * eta * 0.5  # the clip is reached, so the bound is tested
    unbatched = rewards + eta * _gap(classifiers, data)
    np.testing.assert_allclose(augmented, unbatched, rtol=0, atol=1e-6)
