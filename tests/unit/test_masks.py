"""Behaviour of demo processing and skill masks: resampling and windowing of paths, demo -> mask inference on
synthetic corridors (coverage of the demo's route, little leakage to others), and the critic-training mask
samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mstt.skills.masks import (
    MaskInferenceConfig,
    bernoulli_masks,
    infer_mask,
    infer_route_mask,
    pad_token_sequences,
    segment_masks,
    token_sequence,
)
from mstt.skills.tokenizer import SkillTokenizer, train_tokenizer
from mstt.skills.windows import augment_path, position_windows, resample_path

from corridors import EPISODES_PER_ROUTE, GOAL, HORIZON, MIDDLE_X, NOISE, START, STEP, TINY, VIAS


def route_polyline(route: int) -> np.ndarray:
    return np.array([START, VIAS[route], GOAL])


@pytest.fixture(scope="module")
def corridors() -> tuple[SkillTokenizer, list[np.ndarray], np.ndarray]:
    """Trained tokenizer, per-episode (T, 2) paths, and the route label of each episode."""
    rng = np.random.default_rng(0)
    episodes, routes = [], []
    for route in range(len(VIAS)):
        path = resample_path(route_polyline(route), STEP)
        for _ in range(EPISODES_PER_ROUTE):
            episodes.append(path + rng.normal(0.0, NOISE, path.shape))
            routes.append(route)
    windows = np.concatenate([position_windows(e, HORIZON, 1) for e in episodes])
    model, _ = train_tokenizer(windows, TINY, progress=False)
    return model, episodes, np.array(routes)


def middle_tokens(model: SkillTokenizer, episodes: list[np.ndarray], routes: np.ndarray, route: int) -> np.ndarray:
    """Tokens of the route's data windows that start away from the shared start and goal."""
    windows = np.concatenate([position_windows(e, HORIZON, 1) for e, r in zip(episodes, routes) if r == route])
    middle = (windows[:, 0, 0] > MIDDLE_X[0]) & (windows[:, 0, 0] < MIDDLE_X[1])
    return model.encode(torch.as_tensor(windows[middle], dtype=torch.float32)).numpy()


# --- demo -> mask --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("augment", [False, True])
def test_demo_along_one_route_masks_that_route(corridors, augment: bool) -> None:
    model, episodes, routes = corridors
    # A sparse, hand-drawn demo: only the three corners of route A, no timing.
    demo = route_polyline(0)
    mask, report = infer_mask(demo, model, MaskInferenceConfig(augment=augment, n_augment=8), step_length=STEP)
    assert mask.shape == (TINY.codebook_size,) and mask.dtype == torch.bool
    assert report.tokens_active == int(mask.sum()) > 0
    assert report.windows == len(resample_path(demo, STEP)) - HORIZON + 1
    assert (report.augmented_windows > 0) == augment
    assert report.in_distribution_share >= 0.9 and not report.flagged

    covered = mask[torch.as_tensor(middle_tokens(model, episodes, routes, 0))].float().mean()
    assert covered >= 0.9, f"demo mask covers only {covered:.0%} of route A's windows"
    for other in (1, 2):
        leaked = mask[torch.as_tensor(middle_tokens(model, episodes, routes, other))].float().mean()
        assert leaked <= 0.05, f"demo mask admits {leaked:.0%} of route {other}'s windows"


def test_a_route_mask_is_the_union_of_its_paths(corridors) -> None:
    """A demo read as several paths (pieces of a gapped route, the route reversed): the union of their masks, every
    path's windows kept for the demo match, and a piece too short for a window skipped."""
    model, _, _ = corridors
    config = MaskInferenceConfig(augment=False)
    forward = route_polyline(0)
    backward = forward[::-1].copy()
    alone, _ = infer_mask(forward, model, config, step_length=STEP)
    back, _ = infer_mask(backward, model, config, step_length=STEP)
    too_short = forward[:1].repeat(2, axis=0) + np.array([[0.0, 0.0], [STEP, 0.0]])
    both, report = infer_route_mask([(forward, None), (backward, None), (too_short, None)], model, config, STEP)
    assert torch.equal(both, alone | back) and not torch.equal(back, alone)
    assert report.windows == 2 * len(position_windows(resample_path(forward, STEP), HORIZON, 1))
    assert set(report.demo_windows.tokens.tolist()) == set(torch.nonzero(both).flatten().tolist())
    with pytest.raises(ValueError, match="too short"):
        infer_route_mask([(too_short, None)], model, config, STEP)


def test_augmentation_only_adds_tokens(corridors) -> None:
    model, _, _ = corridors
    demo = route_polyline(2)
    plain, _ = infer_mask(demo, model, MaskInferenceConfig(augment=False), step_length=STEP)
    augmented, _ = infer_mask(demo, model, MaskInferenceConfig(augment=True, n_augment=8), step_length=STEP)
    assert bool((plain <= augmented).all())
    again, _ = infer_mask(demo, model, MaskInferenceConfig(augment=True, n_augment=8), step_length=STEP)
    assert torch.equal(augmented, again), "mask inference must be deterministic for a fixed seed"


@pytest.mark.parametrize("augment", [False, True])
def test_demo_windows_are_the_windows_the_mask_comes_from(corridors, augment: bool) -> None:
    """The demo's windows and tokens (what the planner's demo match compares with): their tokens make up exactly the
    demo's mask, and the first windows are the resampled demo itself."""
    model, _, _ = corridors
    demo = route_polyline(1)
    config = MaskInferenceConfig(augment=augment, n_augment=8)
    mask, report = infer_mask(demo, model, config, step_length=STEP)
    anchors = report.demo_windows
    assert anchors.windows.shape == (report.windows + report.augmented_windows, HORIZON, 2)
    assert anchors.tokens.shape == (anchors.windows.shape[0],) and anchors.tokens.dtype == torch.long
    from_windows = torch.zeros_like(mask)
    from_windows[anchors.tokens.to(mask.device)] = True
    assert torch.equal(from_windows, mask)
    own = position_windows(resample_path(demo, STEP), HORIZON, 1)
    np.testing.assert_allclose(anchors.windows[: len(own)].numpy(), own, atol=1e-6)


def test_timed_demo_at_another_rate_gives_the_same_route(corridors) -> None:
    model, episodes, routes = corridors
    # Demo recorded at a third of the data's rate: every third point, timestamps in seconds, data dt = 0.05.
    dense = resample_path(route_polyline(1), STEP)
    timestamps = np.arange(len(dense)) * 0.05
    mask, report = infer_mask(
        dense[::3], model, MaskInferenceConfig(augment=False), step_length=STEP, timestamps=timestamps[::3], dt=0.05
    )
    assert not report.flagged
    assert mask[torch.as_tensor(middle_tokens(model, episodes, routes, 1))].float().mean() >= 0.9
    assert mask[torch.as_tensor(middle_tokens(model, episodes, routes, 0))].float().mean() <= 0.05


def test_a_demo_read_without_its_timestamps_ignores_its_pace(corridors) -> None:
    """use_timestamps=False: a demo whose pace drifts gives the windows, and so the mask, of the same route walked at
    the data's pace; read at its own pace, its windows differ."""
    model, _, _ = corridors
    dense = resample_path(route_polyline(1), STEP)
    steps = np.exp(np.sin(np.linspace(0.0, 2 * np.pi, len(dense) - 1)))  # hurries, then dawdles
    warped = np.concatenate([[0.0], np.cumsum(steps)]) * 0.05
    geometry = MaskInferenceConfig(augment=False, use_timestamps=False)
    plain, plain_report = infer_mask(dense, model, geometry, step_length=STEP)
    unpaced, unpaced_report = infer_mask(dense, model, geometry, step_length=STEP, timestamps=warped, dt=0.05)
    assert torch.equal(plain, unpaced)
    assert torch.equal(plain_report.demo_windows.windows, unpaced_report.demo_windows.windows)
    _, paced_report = infer_mask(
        dense, model, MaskInferenceConfig(augment=False), step_length=STEP, timestamps=warped, dt=0.05
    )
    assert paced_report.demo_windows.windows.shape != plain_report.demo_windows.windows.shape or not torch.allclose(
        paced_report.demo_windows.windows, plain_report.demo_windows.windows
    )


def test_demo_far_from_the_data_is_flagged(corridors) -> None:
    model, _, _ = corridors
    _, report = infer_mask(route_polyline(0) + 50.0, model, MaskInferenceConfig(augment=False), step_length=STEP)
    assert report.flagged and report.in_distribution_share < 0.5
    assert "p99" in report.message


def test_demo_shorter_than_a_window_is_refused(corridors) -> None:
    model, _, _ = corridors
    with pytest.raises(ValueError, match="too short"):
        infer_mask(np.array([[0.0, 0.0], [0.3, 0.0]]), model, MaskInferenceConfig(), step_length=STEP)
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        infer_mask(np.zeros((10, 3)), model, MaskInferenceConfig(), step_length=STEP)


def test_token_sequence_follows_the_path(corridors) -> None:
    model, episodes, _ = corridors
    tokens = token_sequence(episodes[0], model, stride=2)
    assert tokens.shape == ((len(episodes[0]) - HORIZON) // 2 + 1,) and tokens.dtype == np.int64
    assert token_sequence(episodes[0][: HORIZON - 1], model).shape == (0,)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stride", 0),
        ("n_augment", -1),
        ("time_warp", (1.2, 0.4)),
        ("time_warp", (0.0, 1.0)),
        ("offset_sigma", -0.1),
        ("use_timestamps", "no"),
    ],
)
def test_mask_config_rejects_invalid_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        MaskInferenceConfig(**{field: value})


# --- resampling and windowing ------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    angle=st.floats(0.0, 2 * np.pi),
    length=st.floats(0.5, 20.0),
    step=st.floats(0.01, 0.5),
    n_points=st.integers(2, 30),
)
def test_resample_straight_line_by_arc_length(angle: float, length: float, step: float, n_points: int) -> None:
    direction = np.array([np.cos(angle), np.sin(angle)])
    start = np.array([1.0, -2.0])
    # unevenly spaced points on the line: the result must not depend on the demo's point density
    fractions = np.sort(np.concatenate([[0.0, 1.0], np.random.default_rng(n_points).uniform(0, 1, n_points - 2)]))
    points = start + np.outer(fractions * length, direction)
    path = resample_path(points, step)
    assert path.shape == (int(np.floor(length / step + 1e-9)) + 1, 2)
    np.testing.assert_allclose(path[0], start)
    np.testing.assert_allclose(np.linalg.norm(np.diff(path, axis=0), axis=1), step, rtol=1e-6)
    along = (path - start) @ direction
    np.testing.assert_allclose(path, start + np.outer(along, direction), atol=1e-9)  # stays on the line


def test_resample_in_time_interpolates_at_dt() -> None:
    times = np.array([0.0, 1.0, 3.0])
    points = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
    path = resample_path(points, step_length=0.5, timestamps=times, dt=0.5)
    expected = np.array([[0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1], [1, 1.5], [1, 2]])
    np.testing.assert_allclose(path, expected)
    with pytest.warns(UserWarning, match="per step"):
        resample_path(points, step_length=0.05, timestamps=times, dt=0.5)


def test_resample_rejects_half_a_time_spec_and_bad_input() -> None:
    points = np.array([[0.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="timestamps and dt"):
        resample_path(points, 0.1, timestamps=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="step_length"):
        resample_path(points, 0.0)
    with pytest.raises(ValueError, match="increasing"):
        resample_path(points, 0.1, timestamps=np.array([1.0, 1.0]), dt=0.1)
    # repeated points do not break arc-length interpolation
    repeated = resample_path(np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]), 0.25)
    np.testing.assert_allclose(repeated[:, 0], [0.0, 0.25, 0.5, 0.75, 1.0])


@settings(max_examples=50, deadline=None)
@given(length=st.integers(1, 40), horizon=st.integers(2, 10), stride=st.integers(1, 5), pos_dim=st.integers(1, 3))
def test_position_windows_are_consecutive_slices(length: int, horizon: int, stride: int, pos_dim: int) -> None:
    positions = np.arange(length * pos_dim, dtype=np.float64).reshape(length, pos_dim)
    windows = position_windows(positions, horizon, stride)
    expected_count = 0 if length < horizon else (length - horizon) // stride + 1
    assert windows.shape == (expected_count, horizon, pos_dim)
    for i, window in enumerate(windows):
        np.testing.assert_array_equal(window, positions[i * stride : i * stride + horizon])
    assert windows.flags.writeable and windows.flags.c_contiguous


def test_augment_path_warps_speed_and_offsets_rigidly() -> None:
    path = resample_path(np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 3.0]]), STEP)
    copies = augment_path(path, np.random.default_rng(0), time_warp=(0.4, 1.2), offset_sigma=0.15, n=20)
    assert len(copies) == 20
    offsets = []
    for copy in copies:
        steps = np.linalg.norm(np.diff(copy, axis=0), axis=1)
        # constant speed within a copy (the corner cuts one step short), speed within the warp range
        assert 0.4 * STEP - 1e-9 <= np.median(steps) <= 1.2 * STEP + 1e-9
        assert np.mean(np.isclose(steps, np.median(steps))) > 0.9
        offsets.append(copy[0] - path[0])  # the copy starts at the shifted start
    assert 0.05 < np.std(offsets) < 0.3
    unchanged = augment_path(path, np.random.default_rng(0), time_warp=(1.0, 1.0), offset_sigma=0.0, n=1)[0]
    np.testing.assert_allclose(unchanged, path, atol=1e-9)


# --- critic-training mask samplers --------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(batch=st.integers(0, 64), L=st.integers(1, 300), keep_prob=st.floats(0.001, 0.999), seed=st.integers(0, 99))
def test_bernoulli_masks_are_one_seeded_uniform_draw(batch: int, L: int, keep_prob: float, seed: int) -> None:
    masks = bernoulli_masks(batch, L, keep_prob, torch.Generator().manual_seed(seed))
    assert masks.shape == (batch, L) and masks.dtype == torch.bool
    # exactly the draw critic training makes: one (B, L) uniform from the generator, kept below keep_prob
    expected = torch.rand(batch, L, generator=torch.Generator().manual_seed(seed)) < keep_prob
    assert torch.equal(masks, expected)


def test_bernoulli_masks_keep_the_requested_share() -> None:
    masks = bernoulli_masks(2_000, 240, 0.3, torch.Generator().manual_seed(0))
    assert float(masks.float().mean()) == pytest.approx(0.3, abs=0.01)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="keep_prob"):
            bernoulli_masks(2, 10, bad, torch.Generator())


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    L=st.integers(2, 20),
    batch=st.integers(1, 16),
    min_len=st.integers(1, 5),
    extra=st.integers(0, 5),
    seed=st.integers(0, 99),
)
def test_segment_masks_are_token_sets_of_contiguous_segments(
    data: st.DataObject, L: int, batch: int, min_len: int, extra: int, seed: int
) -> None:
    sequences = data.draw(
        st.lists(st.lists(st.integers(0, L - 1), min_size=1, max_size=15).map(np.array), min_size=1, max_size=4)
    )
    max_len = min_len + extra
    table, lengths = pad_token_sequences(sequences, L)
    masks = segment_masks(
        table, lengths, batch, L, torch.Generator().manual_seed(seed),
        segments_per_mask=1, min_windows=min_len, max_windows=max_len,
    )[0]  # fmt: skip
    assert masks.shape == (batch, L) and masks.dtype == torch.bool
    # every row is exactly the token set of some allowed segment of some sequence
    allowed = set()
    for seq in sequences:
        for span in range(min(min_len, len(seq)), min(max_len, len(seq)) + 1):
            for start in range(len(seq) - span + 1):
                allowed.add(frozenset(seq[start : start + span].tolist()))
    for row in masks:
        assert frozenset(torch.nonzero(row).flatten().tolist()) in allowed


def test_segment_masks_are_spatially_coherent(corridors) -> None:
    model, episodes, routes = corridors
    table, lengths = pad_token_sequences([token_sequence(e, model) for e in episodes], TINY.codebook_size)
    masks = segment_masks(
        table, lengths, 64, TINY.codebook_size, torch.Generator().manual_seed(0),
        segments_per_mask=1, min_windows=3, max_windows=6,
    )[0]  # fmt: skip
    route_tokens = [set(middle_tokens(model, episodes, routes, r).tolist()) for r in range(len(VIAS))]
    # a short segment never spans the middles of two routes, unlike a Bernoulli mask of the same size
    for row in masks:
        active = set(torch.nonzero(row).flatten().tolist())
        assert sum(bool(active & tokens) for tokens in route_tokens) <= 1


def test_token_tables_refuse_empty_or_out_of_range_sequences() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        pad_token_sequences([np.array([], dtype=np.int64)], TINY.codebook_size)
    with pytest.raises(ValueError, match="outside"):
        pad_token_sequences([np.array([0, TINY.codebook_size])], TINY.codebook_size)
    with pytest.raises(ValueError, match="min_windows"):
        segment_masks(*pad_token_sequences([np.array([0, 1])], 2), 1, 2, torch.Generator(), segments_per_mask=1,
                      min_windows=3, max_windows=2)  # fmt: skip
