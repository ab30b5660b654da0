"""Latent Shift search rules and heatmaps, on synthetic shifts whose outcome is known."""

import dataclasses

import numpy as np
import pytest
import torch

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.method.search import (
    ZERO_GRADIENT,
    Shift,
    latent_shift,
    next_lambda,
    search_bound,
    search_lambda,
    unmoved,
)
from CTCounterfactualLib.params import SearchParams, option_name


def test_lambda_schedule_matches_reference():
    lams = [0.0]
    for _ in range(6):
        lams.append(next_lambda(lams[-1], 10.0))
    assert lams == [0, -10, -21, -34, -48, -63, -80]


def _shifter(pred_of, frame_of=lambda lam: torch.full((2, 3, 3), 0.5 + lam * 1e-4)):
    calls: list[float] = []

    def shift(lam: float) -> Shift:
        calls.append(lam)
        return Shift(pred_of(lam), float((frame_of(lam) - frame_of(0.0)).abs().sum()), frame_of(lam))

    return shift, calls


def _initial(pred: float) -> Shift:
    return Shift(pred, 0.0, torch.full((2, 3, 3), 0.5))


@pytest.mark.parametrize(
    "pred_of,params,expect_lam,reason",
    [
        # falls steadily until lambda -34 where it rises again: stop there (the reference keeps it)
        (lambda lam: 0.9 + 0.01 * lam if lam > -30 else 0.9, SearchParams(), -34, "rose"),
        # falls below the floor at -21 (0.9 - 0.0421*21 < 0.05)
        (lambda lam: 0.9 + 0.0421 * lam, SearchParams(pred_diff=2.0), -21, "floor"),
        # dropped by pred_diff=0.3 at -34 (0.9 - 0.34 < 0.6)
        (lambda lam: 0.9 + 0.01 * lam, SearchParams(pred_diff=0.3), -34, "dropped"),
        # never stops falling enough: lambda cap
        (lambda lam: 0.9 + 1e-7 * lam, SearchParams(max_steps=40), -48, "reached"),
    ],
)
def test_stop_rules(pred_of, params, expect_lam, reason):
    shift, _ = _shifter(pred_of)
    lam, why, seen = search_lambda(shift, _initial(0.9), pixel_sum=1e9, p=params)
    assert lam == expect_lam
    assert reason in why
    assert list(seen) == [0, -10, -21, -34, -48][: list(seen).index(expect_lam) + 1]


def test_pixel_change_rule():
    # frames change by 1e-4 * |lambda| per voxel over 18 voxels; 5% of pixel_sum=0.5 is 0.025
    shift, _ = _shifter(lambda lam: 0.9 + 1e-7 * lam)
    lam, why, _ = search_lambda(shift, _initial(0.9), pixel_sum=0.5, p=SearchParams())
    assert "pixel" in why
    assert lam == -21  # 18 * 21e-4 = 0.0378 > 0.025, while 18 * 10e-4 = 0.018 is not


def _frames_reference(lbound, steps):
    return [
        np.full((2, 3, 3), 0.5 + lam * 1e-4) + np.arange(18).reshape(2, 3, 3) * lam * 1e-6
        for lam in np.linspace(lbound, 0, steps)
    ]


@pytest.mark.parametrize("method", ["int", "mean", "mm", "max"])
def test_heatmaps_match_reference_formulas(method):
    def frame_of(lam):
        return (
            torch.full((2, 3, 3), 0.5 + lam * 1e-4, dtype=torch.float64)
            + torch.arange(18, dtype=torch.float64).reshape(2, 3, 3) * lam * 1e-6
        )

    shift, calls = _shifter(lambda lam: 0.9 + 0.01 * lam, frame_of)
    p = SearchParams(pred_diff=0.3, heatmap_method=method, lambda_sweep_steps=7)
    out = latent_shift(shift, Shift(0.9, 0.0, frame_of(0.0)), 1e9, p)
    assert out.lam == -34
    frames = _frames_reference(-34, 7)
    x0 = frames[-1]
    expected = {
        "int": np.mean([np.abs(frames[i] - frames[i + 1]) for i in range(6)], 0),
        "mean": np.mean(np.abs(x0 - np.array(frames)), 0),
        "mm": np.abs(frames[0] - frames[-1]),
        "max": np.max(np.abs(x0 - np.array(frames)), 0),
    }[method]
    assert np.allclose(out.heatmap.numpy(), expected, atol=1e-12)
    assert out.sweep_lambdas[0] == -34 and out.sweep_lambdas[-1] == 0
    assert len(out.sweep_preds) == 7 and out.cf_pred == pytest.approx(0.9 - 0.34)
    # lambdas already evaluated during the search are not decoded again in the sweep
    assert calls.count(-34.0) == 1 and 0.0 not in calls


def test_search_bound_is_where_the_lambda_limit_stops_the_schedule():
    assert search_bound(SearchParams()) == 36  # 0, -10, ..., -3103: the real CT's "lambda reached -3000" walk
    assert search_bound(SearchParams(max_steps=40)) == 4  # -10, -21, -34, -48
    shift, calls = _shifter(lambda lam: 0.9 + 1e-7 * lam)  # never stops early: walks the whole bound
    search_lambda(shift, _initial(0.9), pixel_sum=1e9, p=SearchParams(max_steps=40))
    assert len(calls) == 4


@pytest.mark.parametrize("cap", [40, 3000])
def test_progress_counts_every_decode_against_the_most_that_can_come(cap):
    # stops on "prediction rose" at -34 (3 search steps), then 7 - 2 new sweep frames: 8 decodes in all
    events = []
    shift, calls = _shifter(lambda lam: 0.9 + 0.01 * lam if lam > -30 else 0.9)
    p = SearchParams(lambda_sweep_steps=7, max_steps=cap)
    latent_shift(
        shift, _initial(0.9), 1e9, p, on_eval=lambda lam, s, done, most, phase: events.append((done, most, phase))
    )
    assert [d for d, _, _ in events] == list(range(1, len(calls) + 1)) and len(calls) == 8
    searching = [m for _, m, phase in events if phase == "search"]
    assert searching == [search_bound(p) + 5] * 3  # an upper bound while the search may go on
    assert [(d, m) for d, m, phase in events if phase == "sweep"] == [(d, 8) for d in range(4, 9)]  # then exact


def test_unmoved_equals_the_reference_walk_along_a_zero_direction():
    """A zero direction decodes the same frame at every lambda: the walk ends at the lambda limit with
    the reconstruction; ``unmoved`` returns that CF, predictions and heatmap at once, with its own reason."""
    params = SearchParams(max_steps=100)
    frame = torch.rand(2, 3, 3)
    shift, calls = _shifter(lambda lam: 0.7, frame_of=lambda lam: frame)
    initial = Shift(0.7, 0.0, frame)
    walked, frames = latent_shift(shift, initial, 1.0, params), []
    quick = unmoved(initial, params, on_frame=lambda i, lam, s: frames.append(s.frame))
    assert "lambda reached" in walked.stop_reason and len(calls) >= search_bound(params)  # decodes it can skip
    assert quick.stop_reason == ZERO_GRADIENT and quick.lam == 0.0
    assert torch.equal(quick.cf_frame, walked.cf_frame) and torch.equal(quick.heatmap, walked.heatmap)
    assert quick.sweep_preds == walked.sweep_preds and len(frames) == params.lambda_sweep_steps


def test_bad_params_are_clear_errors():
    with pytest.raises(CTCFError, match="at least 2"):
        SearchParams(lambda_sweep_steps=1)
    with pytest.raises(CTCFError, match="--heatmap-method"):
        SearchParams(heatmap_method="median")


def _choice_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(SearchParams) if "choices" in f.metadata]


@pytest.mark.parametrize("name", _choice_fields())
def test_every_choice_is_checked_and_the_error_names_its_option(name):
    with pytest.raises(CTCFError) as exc:
        SearchParams(**{name: "nonsense"})
    assert str(exc.value).startswith(f"{option_name(name)} 'nonsense' is not one of "), str(exc.value)


@pytest.mark.parametrize(
    "name,value,words",
    [
        ("step_size", 0.0, "must be positive"),
        ("pred_diff", -1.0, "must be positive"),
        ("max_steps", 0.0, "must be positive"),
        ("max_pixel_diff_pct", 0.0, "must be positive"),
        ("lambda_sweep_steps", 1, "must be at least 2"),
        ("sparse_fraction", 1.5, "must be in (0, 1]"),
        ("relinearize_every", -1, "must be 0 or more"),
    ],
)
def test_out_of_range_numbers_name_their_option(name, value, words):
    with pytest.raises(CTCFError) as exc:
        SearchParams(**{name: value})
    assert str(exc.value).startswith(option_name(name)) and words in str(exc.value), str(exc.value)
