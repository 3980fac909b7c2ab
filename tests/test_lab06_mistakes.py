"""Lab 06 autograder tests are fair and discriminating.

For every exercise of notebooks/06_beta_vae.py: the model solution, the library's reference and
correct alternative implementations pass its test cell (visible and hidden); the stub, objects
that claim to equal everything, and typical mistakes fail, each mistake with a message that
names it.
"""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import mutual_info_score

from genlab import disentangle, labs
from genlab.testing import AlwaysEqual, EqualTensor, LabHarness, stub

LAB = labs.get("06_beta_vae")
SOURCE = LAB.source(Path(__file__).resolve().parents[1])
EXERCISES = LAB.exercise_names
POINTS = LAB.points


@pytest.fixture(scope="module")
def lab():
    return LabHarness(SOURCE)


# ------------------------------------------- model solutions (common checks: test_lab_cells.py)

def test_model_solutions_agree_with_the_reference(lab):
    ns = lab.namespace()
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(2000, 6, generator=g)
    factors = torch.stack([torch.randint(0, s, (2000,), generator=g) for s in (3, 6, 40)], 1)
    codes[:, :3] += factors.float() * 0.3
    assert ns["mutual_information_gap"](codes, factors) == pytest.approx(
        disentangle.mutual_information_gap(codes, factors), abs=1e-4)
    mu, logvar = torch.randn(30, 4, generator=g), torch.randn(30, 4, generator=g)
    torch.testing.assert_close(ns["kl_per_dimension"](mu, logvar),
                               disentangle.kl_per_dimension(mu, logvar))
    assert ns["active_units"](mu * torch.tensor([1, 0, 0.05, 1])) == \
        disentangle.active_units(mu * torch.tensor([1, 0, 0.05, 1]))


# --------------------------------------------------------------------------- stubs and cheats

@pytest.mark.parametrize("name", EXERCISES)
def test_stub_fails_with_a_clear_message(lab, name):
    msg = lab.fails_with(f"test_{name}", "not implemented yet", **{name: stub})
    assert "Traceback" not in msg


@pytest.mark.parametrize("name", ["kl_per_dimension", "latent_traversal"])
def test_always_equal_tensors_fail(lab, name):
    def cheat(*args, **kwargs):
        return torch.zeros(1).as_subclass(EqualTensor)
    lab.fails_with(f"test_{name}", "tensor subclass", **{name: cheat})


def test_always_equal_tuple_fails(lab):
    def cheat(*args, **kwargs):
        z = torch.zeros(()).as_subclass(EqualTensor)
        return z, z, z
    lab.fails_with("test_beta_vae_loss", "tensor subclass", beta_vae_loss=cheat)


@pytest.mark.parametrize("name, phrase", [("active_units", "expected an int"),
                                          ("mutual_information_gap", "expected a number")])
def test_always_equal_numbers_fail(lab, name, phrase):
    lab.fails_with(f"test_{name}", phrase, **{name: lambda *a, **k: AlwaysEqual()})


# --------------------------------------------------------------------------- exercise 1: loss

def _loss(recon_mode="right", kl_mode="right", combine=lambda r, k, b: r + b * k, tuple_out=True,
          detach=False):
    def beta_vae_loss(logits, x, mu, logvar, beta):
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        recon = {"right": bce.flatten(1).sum(1).mean(),
                 "mean": F.binary_cross_entropy_with_logits(logits, x),
                 "batch_sum": bce.sum(),
                 "double_sigmoid": F.binary_cross_entropy_with_logits(
                     torch.sigmoid(logits), x, reduction="none").flatten(1).sum(1).mean(),
                 "probs_bce": F.binary_cross_entropy(torch.sigmoid(logits), x,
                                                     reduction="none").flatten(1).sum(1).mean(),
                 }[recon_mode]
        terms = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)
        kl = {"right": terms.sum(1).mean(),
              "log_sigma": (0.5 * (mu.pow(2) + (2 * logvar).exp() - 1 - 2 * logvar)).sum(1).mean(),
              "batch_sum": terms.sum(),
              "mean_dims": terms.mean(),
              "sign": -terms.sum(1).mean(),
              "no_half": 2 * terms.sum(1).mean()}[kl_mode]
        loss = combine(recon, kl, beta)
        if detach:
            loss = loss.detach()
        return (loss, recon, kl) if tuple_out else loss
    return beta_vae_loss


LOSS_MISTAKES = [
    ("default reduction (a mean over every pixel)", dict(recon_mode="mean")),
    ("summing over the batch as well", dict(recon_mode="batch_sum")),
    ("applying sigmoid before binary_cross_entropy_with_logits", dict(recon_mode="double_sigmoid")),
    ("logvar treated as log(sigma)", dict(kl_mode="log_sigma")),
    ("summing the KL over the batch", dict(kl_mode="batch_sum")),
    ("averaging the KL over the latent dimensions", dict(kl_mode="mean_dims")),
    ("the KL with the wrong sign", dict(kl_mode="sign")),
    ("forgetting the factor 1/2", dict(kl_mode="no_half")),
    ("beta multiplying the reconstruction term", dict(combine=lambda r, k, b: b * r + k)),
    ("dividing by beta", dict(combine=lambda r, k, b: r + k / b)),
    ("expected a tuple (loss, recon, kl)", dict(tuple_out=False)),
    ("the loss does not require gradients", dict(detach=True)),
]


@pytest.mark.parametrize("phrase, flags", LOSS_MISTAKES, ids=[m[0] for m in LOSS_MISTAKES])
def test_loss_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_beta_vae_loss", phrase, beta_vae_loss=_loss(**flags))


def test_loss_alternatives_pass(lab):
    """From torch.distributions, and from sigmoid probabilities with a clamped log (tolerated:
    it agrees to the tests' precision on these moderate logits)."""
    from torch.distributions import Bernoulli, Normal, kl_divergence

    def beta_vae_loss(logits, x, mu, logvar, beta):
        recon = -Bernoulli(logits=logits).log_prob(x).sum(dim=(1, 2, 3)).mean()
        q = Normal(mu, torch.exp(0.5 * logvar))
        kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1).mean()
        return recon + beta * kl, recon, kl
    lab.run("test_beta_vae_loss", beta_vae_loss=beta_vae_loss)
    lab.run("test_beta_vae_loss", beta_vae_loss=_loss(recon_mode="probs_bce"))
    lab.run("test_beta_vae_loss", beta_vae_loss=disentangle.beta_vae_loss)


# --------------------------------------------------------------------------- exercise 2: KL per dim

def _kl_dims(mode):
    def kl_per_dimension(mu, logvar):
        terms = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)
        return {"per_sample": terms.sum(1), "batch_sum": terms.sum(0),
                "log_sigma": (0.5 * (mu.pow(2) + (2 * logvar).exp() - 1 - 2 * logvar)).mean(0),
                "no_half": 2 * terms.mean(0)}[mode]
    return kl_per_dimension


@pytest.mark.parametrize("phrase, mode", [
    ("the KL of each image", "per_sample"), ("summing over the batch", "batch_sum"),
    ("logvar treated as log(sigma)", "log_sigma"), ("forgetting the factor 1/2", "no_half")])
def test_kl_per_dimension_mistakes_are_named(lab, phrase, mode):
    lab.fails_with("test_kl_per_dimension", phrase, kl_per_dimension=_kl_dims(mode))


def test_kl_per_dimension_alternative_passes(lab):
    def kl_per_dimension(mu, logvar):
        var = torch.exp(logvar)
        return torch.mean((mu * mu + var - torch.log(var) - 1) / 2, dim=0)
    lab.run("test_kl_per_dimension", kl_per_dimension=kl_per_dimension)


# --------------------------------------------------------------------------- exercise 3: active units

def _units(mode):
    def active_units(mu, threshold=0.01):
        if mode == "std":
            return int((mu.std(0) > threshold).sum())
        if mode == "mean":
            return int((mu.mean(0).abs() > threshold).sum())
        if mode == "inactive":
            return int((mu.var(0) <= threshold).sum())
        if mode == "tensor":
            return (mu.var(0) > threshold).sum()
        if mode == "dim1":
            return int((mu.var(1) > threshold).sum())
        if mode == "ignore_threshold":
            return int((mu.var(0) > 0.01).sum())
    return active_units


@pytest.mark.parametrize("phrase, mode", [
    ("comparing the standard deviation with the threshold", "std"),
    ("the mean of each dimension instead of its variance", "mean"),
    ("counting the inactive dimensions", "inactive"),
    ("returning the count as a tensor", "tensor"),
    ("the variance over the dimensions (dim=1)", "dim1"),
    ("wrong value", "ignore_threshold")])
def test_active_units_mistakes_are_named(lab, phrase, mode):
    lab.fails_with("test_active_units", phrase, active_units=_units(mode))


def test_active_units_alternative_with_population_variance_passes(lab):
    def active_units(mu, threshold=0.01):
        centred = mu - mu.mean(dim=0, keepdim=True)
        return sum(1 for v in (centred ** 2).mean(dim=0).tolist() if v > threshold)
    lab.run("test_active_units", active_units=active_units)


# --------------------------------------------------------------------------- exercise 4: traversal

def _traversal(logits=False, add=False, no_eval=False, no_restore=False, sample=False,
               no_grad=True, dim0=False):
    def latent_traversal(model, x, dim, values):
        was = model.training
        if not no_eval:
            model.eval()
        with torch.set_grad_enabled(not no_grad):
            mu, logvar = model.encode(x.reshape(1, *x.shape[-3:]))
            if sample:
                mu = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            v = torch.as_tensor(values, dtype=mu.dtype, device=mu.device)
            z = mu.detach().repeat(len(v), 1) if no_grad else mu.repeat(len(v), 1)
            d = 0 if dim0 else dim
            z[:, d] = z[:, d] + v if add else v
            out = model.decode(z)
            if not logits:
                out = torch.sigmoid(out)
        if not no_restore:
            model.train(was)
        return out
    return latent_traversal


TRAVERSAL_MISTAKES = [
    ("returning logits", dict(logits=True)),
    ("adding the values to mu[dim] instead of setting it", dict(add=True)),
    ("forgetting model.eval()", dict(no_eval=True)),
    ("leaving the model in eval mode", dict(no_restore=True)),
    ("sampling z instead of using the posterior mean", dict(sample=True)),
    ("torch.no_grad()", dict(no_grad=False)),
    ("changing latent dimension 0 instead of dim", dict(dim0=True)),
]


@pytest.mark.parametrize("phrase, flags", TRAVERSAL_MISTAKES, ids=[m[0] for m in TRAVERSAL_MISTAKES])
def test_traversal_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_latent_traversal", phrase, latent_traversal=_traversal(**flags))


def test_traversal_alternative_passes(lab):
    @torch.no_grad()
    def latent_traversal(model, x, dim, values):
        mode = model.training
        model.train(False)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        mean = model.encode(x)[0][0]
        codes = torch.stack([torch.cat([mean[:dim], mean.new_tensor([float(v)]), mean[dim + 1:]])
                             for v in values])
        images = model.decode(codes).sigmoid()
        model.train(mode)
        return images
    lab.run("test_latent_traversal", latent_traversal=latent_traversal)


# --------------------------------------------------------------------------- exercise 5: MIG

def _digitize(codes, n_bins):
    """disentanglement_lib's discretization with NumPy, labels 0..n_bins-1 (NaN-safe)."""
    c = codes.detach().cpu().double().numpy()
    return np.stack([np.digitize(c[:, j], np.histogram(c[:, j], n_bins)[1][:-1]) - 1
                     for j in range(c.shape[1])], 1)


def _mig(bins="right", normalize="factor", gap="top2", bits=None, reduce="mean", as_tensor=False,
         nan_on_constant=False, fixed_bins=None):
    """A sklearn-based MIG with one knob per typical mistake."""
    def mutual_information_gap(codes, factors, n_bins=20):
        nb = fixed_bins or n_bins
        c = codes.detach().cpu().double()
        if bins == "right":
            binned = _digitize(c, nb)
        elif bins == "global":
            lo, hi = c.min(), c.max()
            binned = ((c - lo) / (hi - lo) * nb).floor().clamp(max=nb - 1).long().numpy()
        elif bins == "no_clamp":
            lo, hi = c.min(0).values, c.max(0).values
            binned = ((c - lo) / (hi - lo) * nb).floor().long().numpy()
        elif bins == "floor":   # correct alternative except on constant columns (NaN)
            lo, hi = c.min(0).values, c.max(0).values
            scaled = (c - lo) / (hi - lo) if nan_on_constant else (c - lo) / (hi - lo).clamp_min(1e-300)
            binned = (scaled * nb).floor().clamp(max=nb - 1).nan_to_num(0).long().numpy()
            if nan_on_constant and bool(((hi - lo) == 0).any()):
                return float("nan")
        f = factors.cpu().numpy()
        m = np.array([[mutual_info_score(f[:, k], binned[:, j]) for k in range(f.shape[1])]
                      for j in range(binned.shape[1])])
        h = np.array([mutual_info_score(f[:, k], f[:, k]) for k in range(f.shape[1])])
        if bits == "mi":
            m = m / math.log(2)
        elif bits == "h":
            h = h / math.log(2)
        top = np.sort(m, axis=0)[::-1]
        numer = {"top2": top[0] - top[1], "top1": top[0], "top_minus_min": top[0] - top[-1]}[gap]
        if normalize == "factor":
            denom = h
        elif normalize == "none":
            denom = np.ones_like(h)
        else:  # the winning code dimension's entropy
            winners = np.argmax(m, axis=0)
            denom = np.array([mutual_info_score(binned[:, j], binned[:, j]) for j in winners])
        value = np.mean(numer / denom) if reduce == "mean" else np.median(numer / denom)
        return torch.tensor(value) if as_tensor else float(value)
    return mutual_information_gap


MIG_MISTAKES = [
    ("not dividing by the factor's entropy", dict(normalize="none")),
    ("the largest mutual information alone", dict(gap="top1")),
    ("dividing by the entropy of the code dimension", dict(normalize="code")),
    ("one set of bins for all code dimensions together", dict(bins="global")),
    ("the mutual information in bits (log2) but the entropy in nats", dict(bits="mi")),
    ("the mutual information in nats but the entropy in bits", dict(bits="h")),
    ("the largest and the smallest mutual information", dict(gap="top_minus_min")),
    ("returning the mean as a tensor", dict(as_tensor=True)),
    ("put all its points in one bin", dict(bins="floor", nan_on_constant=True)),
    ("wrong value", dict(bins="no_clamp")),         # n_bins + 1 bins: the maximum alone
    ("wrong value", dict(fixed_bins=20)),           # ignoring n_bins (hidden test with 10)
]


@pytest.mark.parametrize("phrase, flags", MIG_MISTAKES,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MIG_MISTAKES)])
def test_mig_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_mutual_information_gap", phrase,
                   mutual_information_gap=_mig(**flags))


def test_mig_alternatives_pass(lab):
    """disentanglement_lib's recipe with NumPy + scikit-learn, and a floor-based binning that
    handles constant columns."""
    lab.run("test_mutual_information_gap", mutual_information_gap=_mig())
    lab.run("test_mutual_information_gap", mutual_information_gap=_mig(bins="floor"))


STUDENT_WITH_HELPERS_NAMED_LIKE_THE_TESTS = '''
def _labels(v):
    return torch.unique(v, return_inverse=True)[1]


def _mi(joint):                      # the test cell has a helper _mi(a, b) too
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    keep = joint > 0
    return (joint[keep] * (joint[keep] / outer[keep]).log()).sum()


def _joint(a, b):
    a, b = _labels(a), _labels(b)
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    return torch.bincount(a * nb + b, minlength=na * nb).double().reshape(na, nb) / len(a)


def mutual_information_gap(codes, factors, n_bins=20):
    codes = codes.double()
    binned = []
    for j in range(codes.shape[1]):
        column = codes[:, j].contiguous()
        lo, hi = column.min(), column.max()
        edges = lo + torch.arange(n_bins, dtype=torch.float64) * (hi - lo) / n_bins
        binned.append(torch.bucketize(column, edges, right=True) - 1)
    gaps = []
    for k in range(factors.shape[1]):
        v = factors[:, k]
        mi = torch.stack([_mi(_joint(b, v)) for b in binned])
        top = torch.topk(mi, 2).values
        gaps.append((top[0] - top[1]) / _mi(_joint(v, v)))
    return float(torch.stack(gaps).mean())
'''


def test_student_helpers_named_like_the_tests_helpers_are_not_overwritten(lab):
    """A test cell runs in a scope of its own: its helper ``_mi`` does not replace the student's
    ``_mi`` (with another signature), which the student's MIG calls at test time."""
    ns = lab.namespace()
    exec(STUDENT_WITH_HELPERS_NAMED_LIKE_THE_TESTS, ns)  # as the student's cell would
    lab.run("test_mutual_information_gap", namespace=ns)
    assert ns["_mi"].__code__.co_varnames[0] == "joint"
