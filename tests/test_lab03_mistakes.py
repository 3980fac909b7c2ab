"""Lab 03 autograder tests are fair and discriminating.

For every exercise of notebooks/03_denoising_autoencoder.py: the model solution, the library's
reference and correct alternative implementations pass its test cell (visible and hidden); the
stub, objects that claim to equal everything, and typical mistakes fail, each mistake with a
message that names it.
"""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genlab import denoising
from genlab.autoencoder import reconstruction_loss
from genlab import labs
from genlab.testing import AlwaysEqual, EqualTensor, LabHarness, stub

LAB = labs.get("03_denoising_autoencoder")
SOURCE = LAB.source(Path(__file__).resolve().parents[1])
EXERCISES = LAB.exercise_names
POINTS = LAB.points


@pytest.fixture(scope="module")
def lab():
    return LabHarness(SOURCE)


def _draw(x, generator, normal=False, shape=None):
    """The lab's drawing rule: on the generator's device, then moved to x's device."""
    where = x.device if generator is None else generator.device
    fn = torch.randn if normal else torch.rand
    return fn(shape or x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)


def _check_inputs(x, level, upper=1.0, check=True):
    """The input checks; ``check`` True (both), False (none), "type" or "range" (only that one)."""
    if check in (True, "type") and not x.is_floating_point():
        raise TypeError("x must be floating point")
    if check in (True, "range") and (level < 0 or (upper is not None and level > upper)):
        raise ValueError("level out of range")


# Input validation is graded in its own test cell (test_<name>_errors): a function that computes
# the right thing without the checks earns the math points and loses only the errors point.
ERRORS_CELLS = [e for e in EXERCISES if f"test_{e}_errors" in POINTS]


def test_the_input_checks_have_their_own_cells():
    assert ERRORS_CELLS == ["add_gaussian_noise", "add_masking_noise", "add_salt_and_pepper_noise",
                            "psnr", "roc_auc"]
    assert all(POINTS[f"test_{e}_errors"] == 1 for e in ERRORS_CELLS)


# ------------------------------------------- model solutions (common checks: test_lab_cells.py)

def test_model_solutions_agree_with_the_reference(lab):
    ns = lab.namespace()
    x = torch.rand(3, 1, 28, 28)
    for name, level in [("add_gaussian_noise", 0.3), ("add_masking_noise", 0.4),
                        ("add_salt_and_pepper_noise", 0.2)]:
        mine = ns[name](x, level, generator=torch.Generator().manual_seed(1))
        ref = getattr(denoising, name)(x, level, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(mine, ref)
    torch.testing.assert_close(ns["psnr"](x * 0.9, x), denoising.psnr(x * 0.9, x))
    s, a = torch.randint(0, 5, (30,)).float(), torch.randint(1, 7, (20,)).float()
    assert ns["roc_auc"](s, a) == pytest.approx(denoising.roc_auc(s, a), abs=1e-12)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 784),
                                torch.nn.Unflatten(1, (1, 28, 28)))
    torch.testing.assert_close(ns["anomaly_scores"](model, x), denoising.anomaly_scores(model, x))


# --------------------------------------------------------------------------- stubs and cheats

@pytest.mark.parametrize("name", EXERCISES)
def test_stub_fails_with_a_clear_message(lab, name):
    msg = lab.fails_with(f"test_{name}", "not implemented yet", **{name: stub})
    assert "Traceback" not in msg


@pytest.mark.parametrize("name", ERRORS_CELLS)
def test_stub_fails_the_errors_cell(lab, name):
    msg = lab.fails_with(f"test_{name}_errors", "got NotImplementedError", **{name: stub})
    assert "Traceback" not in msg


@pytest.mark.parametrize("name", ["add_gaussian_noise", "add_masking_noise",
                                  "add_salt_and_pepper_noise", "psnr", "anomaly_scores"])
def test_always_equal_tensors_fail(lab, name):
    def cheat(*args, **kwargs):
        return torch.zeros(1).as_subclass(EqualTensor)
    lab.fails_with(f"test_{name}", "tensor subclass", **{name: cheat})


@pytest.mark.parametrize("name", ["denoising_train_step", "roc_auc"])
def test_always_equal_numbers_fail(lab, name):
    lab.fails_with(f"test_{name}", "expected a number", **{name: lambda *a, **k: AlwaysEqual()})


# --------------------------------------------------------------------------- exercise 1: Gaussian

def _gaussian(scale=lambda s: s, clamp=(0.0, 1.0), noise_shape=None, ignore_generator=False,
              uniform=False, in_place=False, reseed=False, check=True):
    def add_gaussian_noise(x, sigma, generator=None):
        _check_inputs(x, sigma, upper=None, check=check)
        if reseed:
            torch.manual_seed(0)
        g = None if ignore_generator or reseed else generator
        shape = noise_shape(x) if noise_shape else None
        if uniform:
            eps = _draw(x, g, normal=False, shape=shape)
        else:
            eps = _draw(x, g, normal=True, shape=shape)
        if in_place:
            return x.add_(scale(sigma) * eps).clamp_(0, 1)
        out = x + scale(sigma) * eps
        return out if clamp is None else out.clamp(*clamp)
    return add_gaussian_noise


GAUSSIAN_MISTAKES = [
    ("forgetting to clamp", dict(clamp=None)),
    ("clamping only from below", dict(clamp=(0.0, None))),
    ("sigma used as the variance", dict(scale=lambda s: s ** 0.5)),
    ("sigma squared", dict(scale=lambda s: s ** 2)),
    ("the same noise for every image", dict(noise_shape=lambda x: (1, *x.shape[1:]))),
    ("one noise value per image", dict(noise_shape=lambda x: (len(x), 1, 1, 1))),
    ("ignoring the generator argument", dict(ignore_generator=True)),
    ("uniform noise (torch.rand)", dict(uniform=True)),
    ("does not depend on the generator's seed", dict(reseed=True)),
    ("x after calling", dict(in_place=True)),
]


@pytest.mark.parametrize("phrase, flags", GAUSSIAN_MISTAKES, ids=[m[0] for m in GAUSSIAN_MISTAKES])
def test_gaussian_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_add_gaussian_noise", phrase, add_gaussian_noise=_gaussian(**flags))


def test_gaussian_helper_without_mistakes_passes(lab):
    lab.run("test_add_gaussian_noise", add_gaussian_noise=_gaussian())
    lab.run("test_add_gaussian_noise_errors", add_gaussian_noise=_gaussian())


INPUT_CHECK_MISTAKES = [   # (check=..., phrase): no checks, or only one of the two
    (False, "expected ValueError, but nothing was raised"),
    ("type", "expected ValueError, but nothing was raised"),
    ("range", "expected TypeError"),
]


@pytest.mark.parametrize("check, phrase", INPUT_CHECK_MISTAKES, ids=["none", "type only", "range only"])
def test_gaussian_without_input_checks_earns_the_math_points_only(lab, check, phrase):
    noise = _gaussian(check=check)
    lab.run("test_add_gaussian_noise", add_gaussian_noise=noise)
    lab.fails_with("test_add_gaussian_noise_errors", phrase, add_gaussian_noise=noise)


def test_gaussian_alternative_with_torch_normal_passes(lab):
    def add_gaussian_noise(x, sigma, generator=None):
        if not x.is_floating_point():
            raise TypeError("floating point only")
        if sigma < 0:
            raise ValueError("negative sigma")
        where = generator.device if generator is not None else x.device
        noise = torch.normal(0.0, float(sigma), size=tuple(x.shape), generator=generator,
                             device=where, dtype=x.dtype)
        return torch.clip(x + noise.to(x.device), min=0, max=1)
    lab.run("test_add_gaussian_noise", add_gaussian_noise=add_gaussian_noise)
    lab.run("test_add_gaussian_noise_errors", add_gaussian_noise=add_gaussian_noise)


# --------------------------------------------------------------------------- exercise 2: masking

def _masking(keep_with_p=False, dropout_scale=False, noise_shape=None, ignore_generator=False,
             multiply_by_u=False, check=True):
    def add_masking_noise(x, p, generator=None):
        _check_inputs(x, p, check=check)
        shape = noise_shape(x) if noise_shape else None
        u = _draw(x, None if ignore_generator else generator, shape=shape)
        if multiply_by_u:
            return x * u
        drop = u >= p if keep_with_p else u < p
        kept = x / (1 - p) if dropout_scale else x
        return torch.where(drop, torch.zeros_like(x), kept)
    return add_masking_noise


MASKING_MISTAKES = [
    ("keeping each pixel with probability p", dict(keep_with_p=True)),
    ("rescaling the kept pixels by 1/(1-p)", dict(dropout_scale=True)),
    ("zeroing whole images", dict(noise_shape=lambda x: (len(x), 1, 1, 1))),
    ("the same mask for every image", dict(noise_shape=lambda x: (1, *x.shape[1:]))),
    ("ignoring the generator argument", dict(ignore_generator=True)),
    ("multiplying the pixels by the random numbers", dict(multiply_by_u=True)),
]


@pytest.mark.parametrize("phrase, flags", MASKING_MISTAKES, ids=[m[0] for m in MASKING_MISTAKES])
def test_masking_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_add_masking_noise", phrase, add_masking_noise=_masking(**flags))


@pytest.mark.parametrize("check, phrase", INPUT_CHECK_MISTAKES, ids=["none", "type only", "range only"])
def test_masking_without_input_checks_earns_the_math_points_only(lab, check, phrase):
    noise = _masking(check=check)
    lab.run("test_add_masking_noise", add_masking_noise=noise)
    lab.fails_with("test_add_masking_noise_errors", phrase, add_masking_noise=noise)


def test_masking_checking_only_negative_p_fails_the_errors_cell(lab):
    def add_masking_noise(x, p, generator=None):
        if not x.is_floating_point():
            raise TypeError("floating point only")
        if p < 0:                               # forgets p > 1
            raise ValueError("negative p")
        return _masking(check=False)(x, p, generator)
    lab.run("test_add_masking_noise", add_masking_noise=add_masking_noise)
    lab.fails_with("test_add_masking_noise_errors", "add_masking_noise(x, p=1.5): expected ValueError",
                   add_masking_noise=add_masking_noise)


def test_masking_alternative_with_bernoulli_passes(lab):
    def add_masking_noise(x, p, generator=None):
        if not torch.is_floating_point(x):
            raise TypeError("floating point only")
        if not (0.0 <= p <= 1.0):
            raise ValueError("p out of range")
        where = generator.device if generator is not None else x.device
        keep = torch.bernoulli(torch.full(x.shape, 1.0 - p, device=where), generator=generator)
        return x * keep.to(x.device, x.dtype)
    lab.run("test_add_masking_noise", add_masking_noise=add_masking_noise)
    lab.run("test_add_masking_noise_errors", add_masking_noise=add_masking_noise)


# --------------------------------------------------------------------------- exercise 3: salt & pepper

def _salt_pepper(mode="right", noise_shape=None, ignore_generator=False, check=True):
    def add_salt_and_pepper_noise(x, p, generator=None):
        _check_inputs(x, p, check=check)
        g = None if ignore_generator else generator
        shape = noise_shape(x) if noise_shape else None
        u = _draw(x, g, shape=shape)
        if mode == "twice":        # salt with probability p, then pepper with probability p
            out = torch.where(u < p, torch.ones_like(x), x)
            return torch.where(_draw(x, g) < p, torch.zeros_like(x), out)
        if mode == "half":
            return torch.where(u < p / 2, (u >= p / 4).to(x.dtype), x)
        if mode == "only_salt":
            return torch.where(u < p, torch.ones_like(x), x)
        if mode == "only_pepper":
            return torch.where(u < p, torch.zeros_like(x), x)
        if mode == "value_p":
            return torch.where(u < p, torch.full_like(x, p), x)
        if mode == "salt_with_p":
            return torch.where(u < p, (_draw(x, g) < p).to(x.dtype), x)
        return torch.where(u < p, (u >= p / 2).to(x.dtype), x)
    return add_salt_and_pepper_noise


SALT_PEPPER_MISTAKES = [
    ("corrupting pixels twice", dict(mode="twice")),
    ("corrupting only p/2 of the pixels", dict(mode="half")),
    ("only salt", dict(mode="only_salt")),
    ("only pepper", dict(mode="only_pepper")),
    ("replacing the corrupted pixels by p", dict(mode="value_p")),
    ("choosing salt with probability p instead of 1/2", dict(mode="salt_with_p")),
    ("the same noise pattern for every image", dict(noise_shape=lambda x: (1, *x.shape[1:]))),
    ("ignoring the generator argument", dict(ignore_generator=True)),
]


@pytest.mark.parametrize("phrase, flags", SALT_PEPPER_MISTAKES,
                         ids=[m[0] for m in SALT_PEPPER_MISTAKES])
def test_salt_and_pepper_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_add_salt_and_pepper_noise", phrase,
                add_salt_and_pepper_noise=_salt_pepper(**flags))


@pytest.mark.parametrize("check, phrase", INPUT_CHECK_MISTAKES, ids=["none", "type only", "range only"])
def test_salt_and_pepper_without_input_checks_earns_the_math_points_only(lab, check, phrase):
    noise = _salt_pepper(check=check)
    lab.run("test_add_salt_and_pepper_noise", add_salt_and_pepper_noise=noise)
    lab.fails_with("test_add_salt_and_pepper_noise_errors", phrase, add_salt_and_pepper_noise=noise)


def test_salt_and_pepper_alternative_with_two_draws_passes(lab):
    def add_salt_and_pepper_noise(x, p, generator=None):
        if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise TypeError("floating point only")
        if p < 0 or p > 1:
            raise ValueError("p out of range")
        where = generator.device if generator is not None else x.device
        hit = torch.rand(x.shape, generator=generator, device=where) < p        # corrupted?
        salt = torch.randint(0, 2, x.shape, generator=generator, device=where)  # which value?
        out = x.clone()
        hit, salt = hit.to(x.device), salt.to(x.device, x.dtype)
        out[hit] = salt[hit]
        return out
    lab.run("test_add_salt_and_pepper_noise", add_salt_and_pepper_noise=add_salt_and_pepper_noise)
    lab.run("test_add_salt_and_pepper_noise_errors", add_salt_and_pepper_noise=add_salt_and_pepper_noise)


# --------------------------------------------------------------------------- exercise 4: PSNR

def _psnr(formula, per_image=True, check=True):
    def psnr(x_hat, x, max_val=1.0):
        if check and x_hat.shape != x.shape:
            raise ValueError("shape mismatch")
        err = (x_hat - x).pow(2)
        mse = err.flatten(1).mean(1) if per_image else err.mean()
        return formula(mse, max_val, err)
    return psnr


PSNR_MISTAKES = [
    ("max_val instead of max_val**2", lambda mse, m, err: 10 * torch.log10(m / mse)),
    ("one MSE for the whole batch", lambda mse, m, err: 10 * torch.log10(m ** 2 / err.mean())),
    ("the same batch-wide PSNR for every image",
     lambda mse, m, err: (10 * torch.log10(m ** 2 / err.mean())).expand(len(err))),
    ("the mean PSNR of the batch", lambda mse, m, err: (10 * torch.log10(m ** 2 / mse)).mean()),
    ("the natural logarithm", lambda mse, m, err: 10 * torch.log(m ** 2 / mse)),
    ("20 * log10 with the MSE", lambda mse, m, err: 20 * torch.log10(m ** 2 / mse)),
    ("the sum of squared errors", lambda mse, m, err: 10 * torch.log10(m ** 2 / err.flatten(1).sum(1))),
    ("the root mean squared error in place of the MSE",
     lambda mse, m, err: 10 * torch.log10(m ** 2 / mse.sqrt())),
    ("adding a small epsilon to the MSE", lambda mse, m, err: 10 * torch.log10(m ** 2 / (mse + 1e-10))),
]


@pytest.mark.parametrize("phrase, formula", PSNR_MISTAKES, ids=[m[0] for m in PSNR_MISTAKES])
def test_psnr_mistakes_are_named(lab, phrase, formula):
    lab.fails_with("test_psnr", phrase, psnr=_psnr(formula))


def test_psnr_without_shape_check_earns_the_math_points_only(lab):
    unchecked = _psnr(lambda mse, m, err: 10 * torch.log10(m ** 2 / mse), check=False)
    lab.run("test_psnr", psnr=unchecked)
    lab.fails_with("test_psnr_errors", "expected ValueError", psnr=unchecked)


def test_psnr_checking_only_the_batch_size_fails_the_errors_cell(lab):
    def psnr(x_hat, x, max_val=1.0):
        if len(x_hat) != len(x):                # lets (4, 1, 28, 28) against (4, 784) through
            raise ValueError("batch sizes differ")
        return denoising.psnr(x_hat, x, max_val) if x_hat.shape == x.shape else (x_hat - x).sum()
    lab.run("test_psnr", psnr=psnr)
    lab.fails_with("test_psnr_errors", "psnr with x_hat (4, 1, 28, 28) and x (4, 784)", psnr=psnr)


def test_psnr_alternative_from_the_rmse_passes(lab):
    def psnr(x_hat, x, max_val=1.0):
        if tuple(x_hat.shape) != tuple(x.shape):
            raise ValueError("shapes differ")
        rmse = F.mse_loss(x_hat, x, reduction="none").reshape(len(x), -1).mean(1).sqrt()
        return 20 * torch.log10(max_val / rmse)
    lab.run("test_psnr", psnr=psnr)
    lab.run("test_psnr_errors", psnr=psnr)


# --------------------------------------------------------------------------- exercise 5: training step

def _train_step(noisy_target=False, zero_grad=True, as_tensor=False, mse=False, clean_input=False,
                steps=1):
    def denoising_train_step(model, x_clean, corrupt, optimizer):
        if zero_grad:
            optimizer.zero_grad()
        x_noisy = x_clean if clean_input else corrupt(x_clean)
        out = model(x_noisy)
        target = x_noisy if noisy_target else x_clean
        loss = F.mse_loss(out, target) if mse else reconstruction_loss(out, target)
        loss.backward()
        for _ in range(steps):
            optimizer.step()
        return loss.detach() if as_tensor else loss.item()
    return denoising_train_step


STEP_MISTAKES = [
    ("the loss against the noisy input instead of the clean target", dict(noisy_target=True)),
    ("no optimizer.zero_grad()", dict(zero_grad=False)),
    ("returning the loss tensor itself", dict(as_tensor=True)),
    ("F.mse_loss (a mean over pixels)", dict(mse=True)),
    ("feeding the clean images to the model", dict(clean_input=True)),
    ("never calling optimizer.step()", dict(steps=0)),
    ("calling optimizer.step() twice", dict(steps=2)),
]


@pytest.mark.parametrize("phrase, flags", STEP_MISTAKES, ids=[m[0] for m in STEP_MISTAKES])
def test_train_step_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_denoising_train_step", phrase, denoising_train_step=_train_step(**flags))


def test_train_step_alternative_passes(lab):
    def denoising_train_step(model, x_clean, corrupt, optimizer):
        model.zero_grad(set_to_none=False)        # clears the same gradients
        prediction = model(corrupt(x_clean))
        per_image = ((prediction - x_clean) ** 2).sum(dim=(1, 2, 3))
        loss = per_image.mean()
        loss.backward()
        optimizer.step()
        return float(loss.detach())
    lab.run("test_denoising_train_step", denoising_train_step=denoising_train_step)


# --------------------------------------------------------------------------- exercise 6: anomaly scores

def _scores(reduce=lambda err: err.pow(2).flatten(1).sum(1), no_grad=True, eval_mode=True,
            restore=True):
    def anomaly_scores(model, x):
        was = model.training
        if eval_mode:
            model.eval()
        if no_grad:
            with torch.no_grad():
                x_hat = model(x)
        else:
            x_hat = model(x)
        if restore:
            model.train(was)
        return reduce(x_hat - x)
    return anomaly_scores


SCORE_MISTAKES = [
    ("the mean squared error of each image instead of the sum",
     dict(reduce=lambda err: err.pow(2).flatten(1).mean(1))),
    ("absolute errors", dict(reduce=lambda err: err.abs().flatten(1).sum(1))),
    ("the Euclidean distance", dict(reduce=lambda err: err.pow(2).flatten(1).sum(1).sqrt())),
    ("one score for the whole batch", dict(reduce=lambda err: err.pow(2).sum())),
    ("summing over the batch instead of over the pixels", dict(reduce=lambda err: err.pow(2).sum(0))),
    ("the scores require gradients", dict(no_grad=False)),
    ("leaving the model in eval mode", dict(restore=False)),
    ("scoring in training mode", dict(eval_mode=False)),
]


@pytest.mark.parametrize("phrase, flags", SCORE_MISTAKES, ids=[m[0] for m in SCORE_MISTAKES])
def test_anomaly_score_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_anomaly_scores", phrase, anomaly_scores=_scores(**flags))


def test_anomaly_scores_alternative_passes(lab):
    def anomaly_scores(model, x):
        mode = model.training
        model.train(False)
        with torch.inference_mode():
            errors = F.mse_loss(model(x), x, reduction="none")
        model.train(mode)
        return errors.reshape(len(x), -1).sum(-1)
    lab.run("test_anomaly_scores", anomaly_scores=anomaly_scores)


# --------------------------------------------------------------------------- exercise 7: ROC-AUC

def _auc(tie=0.5, swap=False, zip_only=False, as_tensor=False, check=True):
    def roc_auc(scores_normal, scores_anomalous):
        if check and (len(scores_normal) == 0 or len(scores_anomalous) == 0):
            raise ValueError("empty")
        s, a = scores_normal.double(), scores_anomalous.double()
        if swap:
            s, a = a, s
        if zip_only:
            k = min(len(s), len(a))
            value = ((a[:k] > s[:k]).double() + tie * (a[:k] == s[:k]).double()).mean()
        else:
            value = ((a[:, None] > s[None, :]).double()
                     + tie * (a[:, None] == s[None, :]).double()).mean()
        return value if as_tensor else value.item()
    return roc_auc


AUC_MISTAKES = [
    ("ties counted as 0", dict(tie=0.0)),
    ("ties counted as 1", dict(tie=1.0)),
    ("the arguments swapped", dict(swap=True)),
    ("comparing each anomalous score only with the normal score at the same index", dict(zip_only=True)),
    ("forgetting .item()", dict(as_tensor=True)),
]


@pytest.mark.parametrize("phrase, flags", AUC_MISTAKES, ids=[m[0] for m in AUC_MISTAKES])
def test_roc_auc_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_roc_auc", phrase, roc_auc=_auc(**flags))


def test_roc_auc_without_empty_check_earns_the_math_points_only(lab):
    lab.run("test_roc_auc", roc_auc=_auc(check=False))
    lab.fails_with("test_roc_auc_errors", "expected ValueError", roc_auc=_auc(check=False))


def test_roc_auc_alternative_from_ranks_passes(lab):
    def roc_auc(scores_normal, scores_anomalous):
        # Mann-Whitney U from average ranks, computed with a sort in NumPy.
        import numpy as np
        s = scores_normal.detach().cpu().double().numpy()
        a = scores_anomalous.detach().cpu().double().numpy()
        if s.size == 0 or a.size == 0:
            raise ValueError("need scores on both sides")
        values = np.concatenate([s, a])
        order = np.argsort(values, kind="mergesort")
        ranks = np.empty(len(values))
        sorted_values = values[order]
        i = 0
        while i < len(values):
            j = i
            while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
                j += 1
            ranks[order[i:j + 1]] = (i + j) / 2 + 1        # average rank of the tie group
            i = j + 1
        u = ranks[len(s):].sum() - len(a) * (len(a) + 1) / 2
        return float(u / (len(s) * len(a)))
    lab.run("test_roc_auc", roc_auc=roc_auc)
    lab.run("test_roc_auc_errors", roc_auc=roc_auc)
