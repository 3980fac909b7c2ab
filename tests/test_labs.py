"""The lab registry: what it says about a repository that disagrees with it."""
import shutil
from pathlib import Path

import pytest

from genlab import labs

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_lab_names_the_registry():
    with pytest.raises(KeyError, match="unknown lab '09_flows'.*01_transposed_convolution"):
        labs.get("09_flows")


def test_a_source_without_an_entry_and_an_entry_without_a_source_are_named(tmp_path):
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    (tmp_path / "notebooks" / "09_flows.py").write_text("# %% [markdown]\n# # Lab 9\n")
    (tmp_path / "notebooks" / "04_vae.py").unlink()
    problems = labs.registry_problems(tmp_path)
    assert len(problems) == 2, problems
    assert "notebooks/09_flows.py has no entry in the lab registry" in problems[0]
    assert "04_vae is in the registry but has no source notebooks/04_vae.py" in problems[1]


def test_exercise_of_a_test_cell():
    lab = labs.get("05_kl_divergence")
    assert lab.exercise_of("test_LinearGaussianModel_posterior") == "LinearGaussianModel"
    assert lab.exercise_of("test_elbo") == "elbo"
    assert lab.exercise_of("elbo") == "elbo"
    with pytest.raises(KeyError, match="no graded cell"):
        lab.exercise_of("test_nothing")


def test_points_and_ids():
    lab = labs.get("01_transposed_convolution")
    assert lab.number == "01" and lab.topic == "tconv"
    assert lab.points == {"test_conv_transpose_output_size": 2, "test_conv_transpose2d": 4,
                          "test_conv_transpose2d_errors": 1, "test_conv2d_matrix": 3}
    assert lab.max_score == 10
    assert labs.available(ROOT) == list(labs.LABS)
