"""genlab.toy2d: the ring of Gaussians and the mode-coverage metrics against hand-made sample sets,
and a short training run of each kind (the comparison itself: ``python -m genlab.toy2d``)."""
import math

import pytest
import torch

from genlab import toy2d
from genlab.toy2d import mode_coverage, ring_centers, ring_of_gaussians

CENTERS = ring_centers(8, 2.0)
STD = 0.05   # any std: the metrics take it as an argument


def _at(mode_counts, offset=(0.0, 0.0), centers=CENTERS):
    """A hand-made sample set: ``mode_counts[k]`` points at centre k (+ offset)."""
    parts = [centers[k] + torch.tensor(offset) for k, c in enumerate(mode_counts) for _ in range(c)]
    return torch.stack(parts) if parts else torch.zeros(0, 2)


# --------------------------------------------------------------------------- the data

def test_ring_centers_lie_on_the_circle_evenly_spaced():
    c = ring_centers(8, 2.0)
    assert c.shape == (8, 2)
    torch.testing.assert_close(c.norm(dim=1), torch.full((8,), 2.0))
    torch.testing.assert_close(c[0], torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(c[2], torch.tensor([0.0, 2.0]), atol=1e-6, rtol=0)
    gaps = (c - c.roll(1, 0)).norm(dim=1)                 # neighbours: 2 r sin(pi / 8)
    torch.testing.assert_close(gaps, torch.full((8,), 4 * math.sin(math.pi / 8)))


def test_ring_of_gaussians_has_the_right_modes_spread_and_weights():
    x = ring_of_gaussians(40_000, std=0.05, generator=torch.Generator().manual_seed(0))
    assert x.shape == (40_000, 2) and x.dtype == torch.float32
    distance, nearest = torch.cdist(x, CENTERS).min(1)
    shares = torch.bincount(nearest, minlength=8).double() / len(x)
    assert (shares - 1 / 8).abs().max() < 0.01            # modes equally likely
    offsets = x - CENTERS[nearest]
    assert abs(offsets.std().item() - 0.05) < 0.002        # per-coordinate standard deviation
    assert abs(offsets.mean().item()) < 0.002
    # the squared distance / std^2 of a 2-D Gaussian is chi-square with 2 degrees of freedom
    within_3 = (distance <= 3 * 0.05).double().mean().item()
    assert abs(within_3 - (1 - math.exp(-4.5))) < 0.003


def test_ring_of_gaussians_is_reproducible_with_a_generator():
    a = ring_of_gaussians(50, generator=torch.Generator().manual_seed(3))
    b = ring_of_gaussians(50, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert ring_of_gaussians(0).shape == (0, 2)


# --------------------------------------------------------------------------- the metrics

def test_every_mode_hit_exactly_covers_all_with_only_good_samples():
    cov = mode_coverage(_at([10] * 8), CENTERS, STD)
    assert cov.counts == [10] * 8 and cov.n == 80
    assert cov.modes_covered == 8 and cov.covered == list(range(8))
    assert cov.good_share == 1.0
    assert str(cov) == "8 of 8 modes covered, 100 % good samples"


def test_a_collapsed_generator_covers_one_mode():
    cov = mode_coverage(_at([0, 0, 0, 50, 0, 0, 0, 0]), CENTERS, STD)
    assert cov.modes_covered == 1 and cov.covered == [3] and cov.good_share == 1.0


def test_samples_between_the_modes_are_not_good():
    middle = torch.zeros(30, 2)                                        # the centre of the ring
    between = 0.5 * (CENTERS[0] + CENTERS[1]).expand(30, 2)            # half-way along the ring
    cov = mode_coverage(torch.cat([middle, between]), CENTERS, STD)
    assert cov.modes_covered == 0 and cov.good_share == 0.0 and cov.counts == [0] * 8


def test_the_three_sigma_boundary():
    inside = _at([1] * 8, offset=(0.0, 3 * STD - 1e-4))
    outside = _at([1] * 8, offset=(3 * STD + 1e-4, 0.0))
    assert mode_coverage(inside, CENTERS, STD).good_share == 1.0
    assert mode_coverage(outside, CENTERS, STD).good_share == 0.0
    assert mode_coverage(outside, CENTERS, STD, k=4.0).good_share == 1.0


def test_a_mode_needs_a_quarter_of_its_fair_share_by_default():
    # 320 samples, 8 modes: a fair share is 40, a quarter of it 10 samples
    counts = [10, 9, 100, 100, 50, 41, 0, 10]
    cov = mode_coverage(_at(counts), CENTERS, STD)
    assert cov.n == 320 and cov.min_count == 10
    assert cov.covered == [0, 2, 3, 4, 5, 7] and cov.modes_covered == 6
    # a stray sample does not cover a mode; with min_share=0 any good sample does
    assert mode_coverage(_at(counts), CENTERS, STD, min_share=0.0).modes_covered == 7
    assert mode_coverage(_at(counts), CENTERS, STD, min_share=0.2).covered == [2, 3]


def test_good_share_counts_the_bad_samples_too():
    good = _at([5] * 8)                                    # 40 good samples
    bad = torch.full((60, 2), 10.0)                        # 60 far away
    cov = mode_coverage(torch.cat([good, bad]), CENTERS, STD)
    assert cov.good_share == pytest.approx(0.4)
    assert cov.min_count == math.ceil(100 / 32)            # the share is of all the samples
    assert cov.modes_covered == 8


def test_the_nearest_centre_gets_the_sample():
    # a sample 0.1 from centre 1 and 1.4 from centre 0: it belongs to centre 1, and is good
    # with std 0.05 (3 std = 0.15)
    x = (CENTERS[1] + 0.1 * (CENTERS[0] - CENTERS[1]) / (CENTERS[0] - CENTERS[1]).norm())[None]
    assert mode_coverage(x, CENTERS, STD, min_share=0.0).covered == [1]


def test_data_from_the_ring_itself_scores_near_perfect():
    x = ring_of_gaussians(4000, std=STD, generator=torch.Generator().manual_seed(1))
    cov = mode_coverage(x, CENTERS, STD)
    assert cov.modes_covered == 8
    assert abs(cov.good_share - (1 - math.exp(-4.5))) < 0.01   # 98.9 % of a 2-D Gaussian


@pytest.mark.parametrize("call, error", [
    (lambda: mode_coverage(torch.zeros(3, 3), CENTERS, STD), ValueError),
    (lambda: mode_coverage(torch.zeros(3), CENTERS, STD), ValueError),
    (lambda: mode_coverage(torch.zeros(3, 2), CENTERS, 0.0), ValueError),
    (lambda: mode_coverage(torch.zeros(3, 2), CENTERS, STD, k=-1.0), ValueError),
    (lambda: mode_coverage(torch.zeros(3, 2), CENTERS, STD, min_share=1.5), ValueError),
    (lambda: mode_coverage(torch.full((3, 2), math.nan), CENTERS, STD), ValueError),
    (lambda: mode_coverage(torch.zeros(3, 2, dtype=torch.long), CENTERS, STD), TypeError),
    (lambda: ring_centers(0), ValueError),
    (lambda: ring_of_gaussians(-1), ValueError),
    (lambda: toy2d.train_toy_gan("dcgan", steps=2), ValueError),
    (lambda: toy2d.train_toy_gan("gan", steps=0), ValueError),
])
def test_bad_input_gets_a_clear_error(call, error):
    with pytest.raises(error):
        call()


def test_empty_sample_sets_cover_nothing():
    cov = mode_coverage(torch.zeros(0, 2), CENTERS, STD)
    assert cov.modes_covered == 0 and cov.good_share == 0.0


# --------------------------------------------------------------------------- training

@pytest.mark.parametrize("kind", ["gan", "wgan-gp"])
def test_a_short_run_records_snapshots(kind):
    run = toy2d.train_toy_gan(kind, steps=6, snapshots=3, n_samples=100, device="cpu",
                              progress=False)
    assert run.steps == [2, 4, 6]
    assert len(run.samples) == len(run.coverage) == 3
    assert all(s.shape == (100, 2) and bool(torch.isfinite(s).all()) for s in run.samples)
    assert run.final is run.coverage[-1] and run.final.n == 100
    assert run.seconds > 0


def test_wgan_gp_uses_the_step_function_it_is_given():
    from genlab.wgan import wgan_train_step
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return wgan_train_step(*args, **kwargs)

    toy2d.train_toy_gan("wgan-gp", steps=4, snapshots=2, n_samples=50, device="cpu",
                        step_fn=counting, progress=False)
    assert len(calls) == 4
    assert all(c["n_critic"] == 5 and c["gp_weight"] == toy2d.TOY_RECIPES["wgan-gp"]["gp_weight"]
               for c in calls)


def test_runs_are_reproducible():
    a = toy2d.train_toy_gan("gan", steps=5, snapshots=1, n_samples=50, device="cpu", seed=3,
                            progress=False)
    b = toy2d.train_toy_gan("gan", steps=5, snapshots=1, n_samples=50, device="cpu", seed=3,
                            progress=False)
    torch.testing.assert_close(a.samples[-1], b.samples[-1])


def test_snapshots_do_not_change_the_training():
    one = toy2d.train_toy_gan("wgan-gp", steps=4, snapshots=1, n_samples=50, device="cpu",
                              progress=False)
    two = toy2d.train_toy_gan("wgan-gp", steps=4, snapshots=4, n_samples=50, device="cpu",
                              progress=False)
    assert two.steps == [1, 2, 3, 4]
    torch.testing.assert_close(one.samples[-1], two.samples[-1])
