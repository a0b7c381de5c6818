"""Behaviour of the skill tokenizer: route separation on synthetic corridors, usage report, collapse detection,
exact save/load, refusal of foreign checkpoints, and the window-feature map it reads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mstt.skills.bc import BCConfig, BCPolicy
from mstt.skills.checkpoint import CheckpointError
from mstt.skills.tokenizer import (
    CodebookCollapseError,
    CodebookCollapseWarning,
    SkillTokenizer,
    TokenizerConfig,
    TokenizerReport,
    train_tokenizer,
)
from mstt.skills.windows import WindowFeatures, position_windows, resample_path, window_features

from corridors import EPISODES_PER_ROUTE, GOAL, HORIZON, MIDDLE_X, NOISE, START, STEP, TINY, VIAS


def corridor_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, 2) windows of noisy episodes along the three routes and (N,) route labels."""
    rng = np.random.default_rng(seed)
    windows, labels = [], []
    for route, via in enumerate(VIAS):
        path = resample_path(np.array([START, via, GOAL]), STEP)
        for _ in range(EPISODES_PER_ROUTE):
            episode = path + rng.normal(0.0, NOISE, path.shape)
            cut = position_windows(episode, HORIZON, stride=1)
            windows.append(cut)
            labels.append(np.full(len(cut), route))
    return np.concatenate(windows), np.concatenate(labels)


@pytest.fixture(scope="module")
def trained() -> tuple[SkillTokenizer, TokenizerReport, np.ndarray, np.ndarray]:
    windows, labels = corridor_data()
    model, report = train_tokenizer(windows, TINY, progress=False)
    return model, report, windows, labels


def test_routes_get_different_tokens_away_from_shared_ends(trained) -> None:
    model, _, windows, labels = trained
    tokens = model.encode(torch.as_tensor(windows, dtype=torch.float32)).numpy()
    middle = (windows[:, 0, 0] > MIDDLE_X[0]) & (windows[:, 0, 0] < MIDDLE_X[1])
    for route in range(len(VIAS)):
        own = tokens[middle & (labels == route)]
        others = set(tokens[middle & (labels != route)].tolist())
        shared = np.isin(own, list(others)).mean()
        assert shared <= 0.05, f"route {route}: {shared:.1%} of its middle windows use tokens of other routes"
    # purity: each token's windows (in the middle band) come overwhelmingly from one route
    pure = sum(np.bincount(labels[middle & (tokens == t)]).max() for t in np.unique(tokens[middle]))
    assert pure / middle.sum() >= 0.97


def test_token_starts_place_each_skill_where_its_windows_start(trained) -> None:
    model, _, windows, _ = trained
    tokens = model.encode(torch.as_tensor(windows, dtype=torch.float32)).numpy()
    starts = model.token_starts().numpy()  # (L, 2)
    assert starts.shape == (model.codebook_size, 2)
    spread = np.linalg.norm(windows[:, 0] - windows[:, 0].mean(axis=0), axis=1).mean()
    errors = [np.linalg.norm(starts[t] - windows[tokens == t, 0].mean(axis=0)) for t in np.unique(tokens)]
    assert np.median(errors) < 0.1 * spread  # decoded starts sit on the token's own windows, not in the middle


def test_usage_report_matches_training_windows(trained) -> None:
    model, report, windows, _ = trained
    tokens = model.encode(torch.as_tensor(windows, dtype=torch.float32))
    live = int(torch.unique(tokens).numel())
    assert report.live_codes == live
    assert report.codebook_size == TINY.codebook_size
    assert report.usage_fraction == pytest.approx(live / TINY.codebook_size)
    assert not report.collapsed
    assert 1.0 <= report.perplexity <= live + 1e-6
    assert 0 < report.recon_error_p50 <= report.recon_error_p99
    assert np.isfinite(report.final_loss)
    # quantiles are kept in the model for mask inference
    assert model.recon_error_p50 == pytest.approx(report.recon_error_p50, rel=1e-5)
    assert model.recon_error_p99 == pytest.approx(report.recon_error_p99, rel=1e-5)
    errors = model.reconstruction_error(torch.as_tensor(windows, dtype=torch.float32)).numpy()
    assert np.mean(errors <= model.recon_error_p99) == pytest.approx(0.99, abs=0.01)


def test_trained_model_is_in_eval_mode_and_encode_never_updates_codebook(trained) -> None:
    model, _, windows, _ = trained
    assert not model.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()  # even in train mode, encode must not move the codebook
    try:
        far = torch.as_tensor(windows[:64] + 100.0, dtype=torch.float32)
        model.encode(far)
        model.reconstruction_error(far)
        assert model.training
    finally:
        model.eval()
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), f"{name} changed during encode"


def test_training_is_seeded() -> None:
    windows, _ = corridor_data(seed=1)
    config = dataclasses.replace(TINY, steps=40)
    first, _ = train_tokenizer(windows, config, progress=False)
    second, _ = train_tokenizer(windows, config, progress=False)
    batch = torch.as_tensor(windows, dtype=torch.float32)
    assert torch.equal(first.encode(batch), second.encode(batch))


def test_collapse_on_constant_data_is_never_silent() -> None:
    constant = np.zeros((600, HORIZON, 2))
    config = dataclasses.replace(TINY, codebook_size=64, steps=5, kmeans_iters=2)
    with pytest.raises(CodebookCollapseError, match="collapsed") as caught:
        train_tokenizer(constant, config, progress=False)
    assert caught.value.report.collapsed
    assert caught.value.report.live_codes == 1
    lenient = dataclasses.replace(config, allow_collapse=True)
    with pytest.warns(CodebookCollapseWarning):
        _, report = train_tokenizer(constant, lenient, progress=False)
    assert report.collapsed and report.usage_fraction < 0.5


def test_save_load_roundtrip_is_exact(trained, tmp_path: Path) -> None:
    model, _, windows, _ = trained
    directory = Path(model.save_pretrained(tmp_path / "tok"))
    assert {p.name for p in directory.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    meta = json.loads((directory / "config.json").read_text())
    assert meta["kind"] == "skill_tokenizer" and meta["extra"]["pos_dim"] == 2
    loaded = SkillTokenizer.from_pretrained(directory, device="cpu")
    assert loaded.config == model.config
    assert (loaded.horizon, loaded.codebook_size, loaded.pos_dim) == (HORIZON, TINY.codebook_size, 2)
    batch = torch.as_tensor(windows, dtype=torch.float32)
    assert torch.equal(loaded.encode(batch), model.encode(batch))
    assert torch.equal(loaded.reconstruction_error(batch), model.reconstruction_error(batch))
    assert loaded.recon_error_p99 == model.recon_error_p99
    # saving again over an existing checkpoint replaces it atomically
    model.save_pretrained(directory)
    assert torch.equal(SkillTokenizer.from_pretrained(directory).encode(batch), model.encode(batch))


def test_save_refuses_to_wipe_a_foreign_directory(trained, tmp_path: Path) -> None:
    model, _, _, _ = trained
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        model.save_pretrained(tmp_path)
    assert (tmp_path / "notes.txt").exists()


def test_checkpoint_of_another_kind_is_refused(tmp_path: Path) -> None:
    BCPolicy(BCConfig(hidden=4, layers=1), obs_dim=2, goal_dim=2, act_dim=2).save_pretrained(tmp_path / "bc")
    with pytest.raises(CheckpointError, match=r"config\.json.*'bc_policy'.*'skill_tokenizer'"):
        SkillTokenizer.from_pretrained(tmp_path / "bc")


@pytest.mark.parametrize(
    ("section", "key", "value", "error"),
    [
        ("config", "hidden", 32, r"model\.safetensors.*shape"),
        ("extra", "pos_dim", 3, r"model\.safetensors.*shape"),
        ("config", "codebook_size", 1, r"config\.json.*codebook_size"),
        ("config", "not_a_field", 1, r"config\.json.*not_a_field"),
    ],
)
def test_mismatched_checkpoint_is_refused(
    trained, tmp_path: Path, section: str, key: str, value: int, error: str
) -> None:
    model, _, _, _ = trained
    directory = Path(model.save_pretrained(tmp_path / "tok"))
    meta = json.loads((directory / "config.json").read_text())
    meta[section][key] = value
    (directory / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=error):
        SkillTokenizer.from_pretrained(directory)


def test_missing_checkpoint_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        SkillTokenizer.from_pretrained(tmp_path)


def test_untrained_tokenizer_refuses_to_encode() -> None:
    model = SkillTokenizer(TINY, pos_dim=2)
    with pytest.raises(RuntimeError, match="not initialised"):
        model.encode(torch.zeros(4, HORIZON, 2))


def test_encode_checks_window_shape(trained) -> None:
    model, _, _, _ = trained
    with pytest.raises(ValueError, match=r"\(B, 8, 2\)"):
        model.encode(torch.zeros(4, HORIZON + 1, 2))
    with pytest.raises(ValueError, match="horizon"):
        train_tokenizer(np.zeros((100, HORIZON + 1, 2)), TINY, progress=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("horizon", 1),
        ("codebook_size", 0),
        ("beta", -0.1),
        ("lr", 0.0),
        ("ema_decay", 1.0),
        ("threshold_ema_dead_code", 50.0),
        ("displacement_scale", 0.0),
        ("device", "not-a-device"),
    ],
)
def test_config_rejects_invalid_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        TokenizerConfig(**{field: value})


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 4),
    horizon=st.integers(2, 6),
    pos_dim=st.integers(1, 3),
    scale=st.floats(0.1, 4.0),
    seed=st.integers(0, 1000),
)
def test_window_features_are_start_plus_scaled_displacements(
    batch: int, horizon: int, pos_dim: int, scale: float, seed: int
) -> None:
    windows = torch.randn(batch, horizon, pos_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    features = window_features(windows, scale)
    assert features.shape == (batch, WindowFeatures.feature_dim(horizon, pos_dim))
    for t in range(horizon):
        block = features[:, t * pos_dim : (t + 1) * pos_dim]
        expected = windows[:, 0] if t == 0 else (windows[:, t] - windows[:, 0]) * scale
        torch.testing.assert_close(block, expected)
    # features do not depend on the window's past: shifting a window shifts only its start block
    shifted = window_features(windows + 1.0, scale)
    torch.testing.assert_close(shifted[:, pos_dim:], features[:, pos_dim:])
