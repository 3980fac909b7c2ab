"""Lab 05 autograder tests are fair and discriminating.

For every exercise of notebooks/05_kl_divergence.py: the model solution, the library's reference
and correct alternative implementations pass its test cells (visible and hidden); the stub,
objects that claim to equal everything, and typical mistakes fail, each mistake with a message
that names it.
"""
import math
from pathlib import Path

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from genlab import kl
from genlab.kl import draw_samples
from genlab import labs
from genlab.testing import AlwaysEqual, EqualTensor, LabHarness, stub
from genlab.vae import kl_to_standard_normal

pytestmark = pytest.mark.filterwarnings(r"ignore:std\(\).*degrees of freedom")

LAB = labs.get("05_kl_divergence")
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
    a, b, c, d = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ns["kl_univariate"](a, c.exp(), b, d.exp()),
                               kl.kl_univariate(a, c.exp(), b, d.exp()))
    torch.testing.assert_close(ns["kl_diag_gaussians"](a, b, c, d), kl.kl_diag_gaussians(a, b, c, d))
    q, p = Normal(torch.tensor(1.0), torch.tensor(0.5)), Normal(torch.tensor(0.0), torch.tensor(1.0))
    mine = ns["kl_monte_carlo"](q, p, 100, generator=torch.Generator().manual_seed(1))
    ref = kl.kl_monte_carlo(q, p, 100, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(torch.stack(mine), torch.stack(ref))
    W, x = torch.randn(4, 2, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    ours, theirs = ns["LinearGaussianModel"](W, x[0], 0.3), kl.LinearGaussianModel(W, x[0], 0.3)
    torch.testing.assert_close(ours.log_marginal(x), theirs.log_marginal(x))
    for u, v in zip(ours.posterior(x), theirs.posterior(x)):
        torch.testing.assert_close(u, v)
    mu, lv = torch.randn(2, 6, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ns["elbo"](theirs, x, mu, lv), kl.elbo(theirs, x, mu, lv))


# --------------------------------------------------------------------------- stubs and cheats

class StubModel:
    def __init__(self, W, b, noise_var):
        self.W, self.b, self.noise_var = W, b, noise_var

    def log_marginal(self, x):
        raise NotImplementedError()

    def posterior(self, x):
        raise NotImplementedError()


def test_stub_fails_every_test_cell(lab):
    replace = {name: stub for name in EXERCISES}
    replace["LinearGaussianModel"] = StubModel
    for test_id in lab.tests:
        lab.fails_with(test_id, "not implemented yet", **replace)


@pytest.mark.parametrize("name", ["kl_univariate", "kl_diag_gaussians", "elbo"])
def test_always_equal_tensors_fail(lab, name):
    def cheat(*args, **kwargs):
        return torch.zeros(1).as_subclass(EqualTensor)
    lab.fails_with(f"test_{name}", "tensor subclass", **{name: cheat})


def test_always_equal_numbers_fail_monte_carlo(lab):
    lab.fails_with("test_kl_monte_carlo", "expected a number",
                   kl_monte_carlo=lambda *a, **k: (AlwaysEqual(), AlwaysEqual()))


def test_always_equal_model_outputs_fail(lab):
    class Cheat(StubModel):
        def log_marginal(self, x):
            return torch.zeros(1).as_subclass(EqualTensor)

        def posterior(self, x):
            return (torch.zeros(1).as_subclass(EqualTensor),) * 2
    lab.fails_with("test_LinearGaussianModel", "tensor subclass", LinearGaussianModel=Cheat)
    lab.fails_with("test_LinearGaussianModel_posterior", "tensor subclass", LinearGaussianModel=Cheat)


# --------------------------------------------------------------------------- exercise 1: kl_univariate

def _univariate(formula):
    def kl_univariate(mu1, sigma1, mu2, sigma2):
        return formula(mu1, sigma1, mu2, sigma2, (mu1 - mu2) ** 2)
    return kl_univariate


UNIVARIATE_MISTAKES = [
    ("the two distributions swapped",
     lambda m1, s1, m2, s2, d: torch.log(s1 / s2) + (s2 ** 2 + d) / (2 * s1 ** 2) - 0.5),
    ("a missing 1/2 in the quadratic term",
     lambda m1, s1, m2, s2, d: torch.log(s2 / s1) + (s1 ** 2 + d) / s2 ** 2 - 0.5),
    ("a sign error in the log term",
     lambda m1, s1, m2, s2, d: torch.log(s1 / s2) + (s1 ** 2 + d) / (2 * s2 ** 2) - 0.5),
    ("forgetting the -1/2",
     lambda m1, s1, m2, s2, d: torch.log(s2 / s1) + (s1 ** 2 + d) / (2 * s2 ** 2)),
    ("without the factor 1/2",
     lambda m1, s1, m2, s2, d: torch.log(s2 ** 2 / s1 ** 2) + (s1 ** 2 + d) / (2 * s2 ** 2) - 0.5),
    ("sigma where sigma^2 belongs",
     lambda m1, s1, m2, s2, d: torch.log(s2 / s1) + (s1 + d) / (2 * s2) - 0.5),
    ("the sigmas treated as variances",
     lambda m1, s1, m2, s2, d: 0.5 * torch.log(s2 / s1) + (s1 + d) / (2 * s2) - 0.5),
    ("dividing by sigma1^2 instead of sigma2^2",
     lambda m1, s1, m2, s2, d: torch.log(s2 / s1) + (s1 ** 2 + d) / (2 * s1 ** 2) - 0.5),
    ("forgetting the squared difference of the means",
     lambda m1, s1, m2, s2, d: torch.log(s2 / s1) + s1 ** 2 / (2 * s2 ** 2) - 0.5),
    ("torch.distributions.Normal",
     lambda m1, s1, m2, s2, d: torch.distributions.kl_divergence(Normal(m1, s1), Normal(m2, s2))),
]


@pytest.mark.parametrize("phrase, formula", UNIVARIATE_MISTAKES, ids=[m[0] for m in UNIVARIATE_MISTAKES])
def test_univariate_mistakes_are_named(lab, phrase, formula):
    lab.fails_with("test_kl_univariate", phrase, kl_univariate=_univariate(formula))


def test_univariate_alternative_from_variances_passes(lab):
    def kl_univariate(mu1, sigma1, mu2, sigma2):
        var1, var2 = sigma1.pow(2), sigma2.pow(2)
        return 0.5 * (var1 / var2 + (mu2 - mu1).square() / var2 - 1 + var2.log() - var1.log())
    lab.run("test_kl_univariate", kl_univariate=kl_univariate)


def test_univariate_alternative_cross_entropy_minus_entropy_passes(lab):
    def kl_univariate(mu1, sigma1, mu2, sigma2):
        cross = 0.5 * torch.log(2 * math.pi * sigma2 ** 2) + (sigma1 ** 2 + (mu1 - mu2) ** 2) / (2 * sigma2 ** 2)
        entropy = 0.5 * torch.log(2 * math.pi * math.e * sigma1 ** 2)
        return cross - entropy
    lab.run("test_kl_univariate", kl_univariate=kl_univariate)


# --------------------------------------------------------------------------- exercise 2: kl_diag_gaussians

def _per_dim(mq, lq, mp, lp):
    return 0.5 * (lp - lq + (lq.exp() + (mq - mp) ** 2) / lp.exp() - 1)


DIAG_MISTAKES = [
    ("logvar used as a log standard deviation", lambda mq, lq, mp, lp: _per_dim(mq, 2 * lq, mp, 2 * lp).sum(-1)),
    ("a missing factor 1/2", lambda mq, lq, mp, lp: (2 * _per_dim(mq, lq, mp, lp)).sum(-1)),
    ("averaged over the latent dimensions instead of summed",
     lambda mq, lq, mp, lp: _per_dim(mq, lq, mp, lp).mean(-1)),
    ("a sign error in the log term",
     lambda mq, lq, mp, lp: (_per_dim(mq, lq, mp, lp) - (lp - lq)).sum(-1)),
    ("the arguments swapped", lambda mq, lq, mp, lp: _per_dim(mp, lp, mq, lq).sum(-1)),
    ("the KL to N(0, I)", lambda mq, lq, mp, lp: kl_to_standard_normal(mq, lq)),
    ("one number for the whole batch", lambda mq, lq, mp, lp: _per_dim(mq, lq, mp, lp).sum()),
    ("never summed over the last dimension", lambda mq, lq, mp, lp: _per_dim(mq, lq, mp, lp)),
    ("torch.distributions.Normal",
     lambda mq, lq, mp, lp: torch.distributions.kl_divergence(
         Normal(mq, (0.5 * lq).exp()), Normal(mp, (0.5 * lp).exp())).sum(-1)),
]


@pytest.mark.parametrize("phrase, formula", DIAG_MISTAKES, ids=[m[0] for m in DIAG_MISTAKES])
def test_diag_mistakes_are_named(lab, phrase, formula):
    lab.fails_with("test_kl_diag_gaussians", phrase, kl_diag_gaussians=formula)


def test_diag_alternative_from_the_univariate_kl_passes(lab):
    def kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p):
        return kl.kl_univariate(mu_q, torch.exp(logvar_q / 2), mu_p, torch.exp(logvar_p / 2)).sum(dim=-1)
    lab.run("test_kl_diag_gaussians", kl_diag_gaussians=kl_diag_gaussians)


def test_diag_alternative_with_variance_ratios_passes(lab):
    def kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p):
        ratio = torch.exp(logvar_q - logvar_p)
        return 0.5 * torch.sum(ratio + (mu_p - mu_q) ** 2 * torch.exp(-logvar_p) - 1 - torch.log(ratio), dim=-1)
    lab.run("test_kl_diag_gaussians", kl_diag_gaussians=kl_diag_gaussians)


# --------------------------------------------------------------------------- exercise 3: kl_monte_carlo

def _monte_carlo(source="q", sign=1.0, se=lambda f, n: f.std(0) / math.sqrt(n), use_generator=True,
                 one_draw=False, check=True, as_floats=False):
    def kl_monte_carlo(q, p, n, generator=None):
        if check and n < 2:
            raise ValueError("n < 2")
        dist = q if source == "q" else p
        if one_draw:
            z = draw_samples(dist, 1, generator).expand(n, *dist.event_shape)
        else:
            z = draw_samples(dist, n, generator if use_generator else None)
        f = sign * (q.log_prob(z) - p.log_prob(z))
        out = f.mean(0), se(f, n)
        return tuple(float(v) for v in out) if as_floats else out
    return kl_monte_carlo


MC_MISTAKES = [
    ("a sign error", dict(sign=-1.0)),
    ("samples drawn from p instead of q", dict(source="p")),
    ("the KL in the other direction", dict(source="p", sign=-1.0)),
    ("the per-sample standard deviation instead of the standard error", dict(se=lambda f, n: f.std(0))),
    ("dividing the standard deviation by n instead of by sqrt(n)", dict(se=lambda f, n: f.std(0) / n)),
    ("the variance divided by sqrt(n)", dict(se=lambda f, n: f.var(0) / math.sqrt(n))),
    ("a standard error of 0", dict(one_draw=True)),
    ("ignoring the generator argument", dict(use_generator=False)),
    ("expected ValueError", dict(check=False)),
]


@pytest.mark.parametrize("phrase, flags", MC_MISTAKES, ids=[m[0] for m in MC_MISTAKES])
def test_monte_carlo_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_kl_monte_carlo", phrase, kl_monte_carlo=_monte_carlo(**flags))


def test_monte_carlo_standard_error_checked_by_repeated_runs(lab):
    """A standard error that is right at n = 20000 and n = 5000 but wrong for small n (here: the
    biased s.d. with a made-up small-sample shrinkage) is caught by the repeated-runs check."""
    lab.fails_with("test_kl_monte_carlo", "the spread of the estimates",
                   kl_monte_carlo=_monte_carlo(se=lambda f, n: f.std(0) / math.sqrt(n) * min(1.0, n / 200)))


def test_monte_carlo_a_mean_over_everything_fails(lab):
    def kl_monte_carlo(q, p, n, generator=None):
        if n < 2:
            raise ValueError("n")
        z = draw_samples(q, n, generator)
        f = q.log_prob(z) - p.log_prob(z)
        return f.mean(), f.std() / math.sqrt(n)   # a 3-D MVN has f of shape (n,): still right
    lab.run("test_kl_monte_carlo", kl_monte_carlo=kl_monte_carlo)


def test_monte_carlo_per_coordinate_log_probs_fail(lab):
    def kl_monte_carlo(q, p, n, generator=None):
        if n < 2:
            raise ValueError("n")
        z = draw_samples(q, n, generator)
        f = Normal(q.mean, q.variance.sqrt()).log_prob(z) - Normal(p.mean, p.variance.sqrt()).log_prob(z)
        return f.mean(0), f.std(0) / math.sqrt(n)
    lab.fails_with("test_kl_monte_carlo", "should be one number", kl_monte_carlo=kl_monte_carlo)


def test_monte_carlo_returning_floats_passes(lab):
    lab.run("test_kl_monte_carlo", kl_monte_carlo=_monte_carlo(as_floats=True))


def test_monte_carlo_alternative_with_rsample_passes(lab):
    def kl_monte_carlo(q, p, n, generator=None):
        if n <= 1:
            raise ValueError("at least two samples")
        z = draw_samples(q, n, generator=generator)
        values = q.log_prob(z) - p.log_prob(z)
        mean = values.sum(0) / n
        sd = ((values - mean) ** 2).sum(0).div(n - 1).sqrt()
        return mean, sd / n ** 0.5
    lab.run("test_kl_monte_carlo", kl_monte_carlo=kl_monte_carlo)


# --------------------------------------------------------------------------- exercise 4: LinearGaussianModel

def _model(cov=lambda W, s: W @ W.T + s * torch.eye(W.shape[0], dtype=W.dtype, device=W.device),
           mean=lambda b: b, exp=False, reduce=None):
    class Model(kl.LinearGaussianModel):
        def log_marginal(self, x):
            value = MultivariateNormal(mean(self.b), cov(self.W, self.noise_var)).log_prob(x)
            if reduce is not None:
                value = reduce(value)
            return value.exp() if exp else value
    return Model


MARGINAL_MISTAKES = [
    ("noise_var squared", dict(cov=lambda W, s: W @ W.T + s ** 2 * torch.eye(W.shape[0], dtype=W.dtype))),
    ("forgetting the offset b", dict(mean=lambda b: torch.zeros_like(b))),
    ("log p(x | z = 0)", dict(cov=lambda W, s: s * torch.eye(W.shape[0], dtype=W.dtype))),
    ("the density instead of its logarithm", dict(exp=True)),
    ("one number for the whole batch", dict(reduce=lambda v: v.sum())),
    ("W^T W in place of W W^T",
     dict(cov=lambda W, s: W.T @ W + s * torch.eye(W.shape[1], dtype=W.dtype))),
]


@pytest.mark.parametrize("phrase, flags", MARGINAL_MISTAKES, ids=[m[0] for m in MARGINAL_MISTAKES])
def test_log_marginal_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_LinearGaussianModel", phrase, LinearGaussianModel=_model(**flags))


def test_log_marginal_forgetting_the_noise_is_named(lab):
    class Model(kl.LinearGaussianModel):
        def log_marginal(self, x):   # W W^T alone: singular for D > K, so the student's code crashes
            return MultivariateNormal(self.b, self.W @ self.W.T).log_prob(x)
    lab.fails_with("test_LinearGaussianModel", "forgetting the noise", LinearGaussianModel=Model)


def test_log_marginal_per_coordinate_densities_are_named(lab):
    class Model(kl.LinearGaussianModel):
        def log_marginal(self, x):
            var = (self.W ** 2).sum(1) + self.noise_var
            return Normal(self.b, var.sqrt()).log_prob(x)
    lab.fails_with("test_LinearGaussianModel", "log densities per coordinate",
                   LinearGaussianModel=Model)


def test_model_without_attributes_fails(lab):
    class Model(kl.LinearGaussianModel):
        def __init__(self, W, b, noise_var):
            super().__init__(W, b, noise_var)
            self.sigma2 = self.noise_var
            del self.noise_var
    lab.fails_with("test_LinearGaussianModel", "no attribute noise_var", LinearGaussianModel=Model)


def _posterior_model(cov_fn, mean_fn=None):
    class Model(kl.LinearGaussianModel):
        def posterior(self, x):
            W, b, s = self.W, self.b, self.noise_var
            eye = torch.eye(W.shape[1], dtype=W.dtype, device=W.device)
            cov = cov_fn(W, s, eye)
            right_cov = torch.linalg.inv(eye + W.T @ W / s)
            mean = mean_fn(W, b, s, x, right_cov) if mean_fn else (x - b) @ W @ cov / s
            return mean, cov
    return Model


_RIGHT_COV = lambda W, s, eye: torch.linalg.inv(eye + W.T @ W / s)

POSTERIOR_MISTAKES = [
    ("the precision I + W^T W / noise_var instead of its inverse", dict(cov_fn=lambda W, s, eye: eye + W.T @ W / s)),
    ("noise_var squared", dict(cov_fn=lambda W, s, eye: torch.linalg.inv(eye + W.T @ W / s ** 2))),
    ("forgetting the prior's I", dict(cov_fn=lambda W, s, eye: torch.linalg.inv(W.T @ W / s))),
    ("forgetting to subtract b", dict(cov_fn=_RIGHT_COV, mean_fn=lambda W, b, s, x, c: x @ W @ c / s)),
    ("a mean without the posterior covariance", dict(cov_fn=_RIGHT_COV, mean_fn=lambda W, b, s, x, c: (x - b) @ W / s)),
    ("a mean without the 1 / noise_var", dict(cov_fn=_RIGHT_COV, mean_fn=lambda W, b, s, x, c: (x - b) @ W @ c)),
    ("the least-squares code", dict(cov_fn=_RIGHT_COV,
                                    mean_fn=lambda W, b, s, x, c: (x - b) @ torch.linalg.pinv(W).T)),
    ("the transpose of the mean", dict(cov_fn=_RIGHT_COV, mean_fn=lambda W, b, s, x, c: ((x - b) @ W @ c / s).T)),
    ("one covariance per sample", dict(cov_fn=lambda W, s, eye: torch.linalg.inv(eye + W.T @ W / s).expand(6, -1, -1))),
]


@pytest.mark.parametrize("phrase, flags", POSTERIOR_MISTAKES, ids=[m[0] for m in POSTERIOR_MISTAKES])
def test_posterior_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_LinearGaussianModel_posterior", phrase, LinearGaussianModel=_posterior_model(**flags))


def test_model_alternative_with_solve_and_explicit_density_passes(lab):
    class LinearGaussianModel:
        def __init__(self, W, b, noise_var):
            self.W, self.b, self.noise_var = W, b, noise_var

        def log_marginal(self, x):
            D = self.W.shape[0]
            C = self.W @ self.W.T + self.noise_var * torch.eye(D, dtype=x.dtype, device=x.device)
            L = torch.linalg.cholesky(C)
            r = torch.linalg.solve_triangular(L, (x - self.b).T, upper=False)      # (D, N)
            return (-0.5 * (r ** 2).sum(0) - torch.log(torch.diagonal(L)).sum()
                    - 0.5 * D * math.log(2 * math.pi))

        def posterior(self, x):
            K = self.W.shape[1]
            precision = torch.eye(K, dtype=x.dtype, device=x.device) + self.W.T @ self.W / self.noise_var
            mean = torch.linalg.solve(precision, self.W.T @ (x - self.b).T / self.noise_var).T
            return mean, torch.linalg.inv(precision)
    lab.run("test_LinearGaussianModel", LinearGaussianModel=LinearGaussianModel)
    lab.run("test_LinearGaussianModel_posterior", LinearGaussianModel=LinearGaussianModel)


def test_model_alternative_by_conditioning_the_joint_passes(lab):
    class LinearGaussianModel(kl.LinearGaussianModel):
        def posterior(self, x):     # Cov(z, x) Cov(x)^-1, the Kalman-gain form, batched cov
            C = self.W @ self.W.T + self.noise_var * torch.eye(self.W.shape[0], dtype=x.dtype)
            gain = self.W.T @ torch.linalg.inv(C)
            return (x - self.b) @ gain.T, torch.eye(self.W.shape[1], dtype=x.dtype) - gain @ self.W
    lab.run("test_LinearGaussianModel_posterior", LinearGaussianModel=LinearGaussianModel)


# --------------------------------------------------------------------------- exercise 5: elbo

def _elbo(lv_scale=1.0, spread=True, const=True, half=True, square_s=False, kl_sign=-1.0,
          kl_mean=False, evidence=False, negate=False, batch_mean=False, sample=False):
    def elbo(model, x, q_mu, q_logvar):
        if evidence:
            return model.log_marginal(x)
        W, b = model.W, model.b
        s = model.noise_var ** 2 if square_s else model.noise_var
        lv = lv_scale * q_logvar
        if sample:
            z = q_mu + (0.5 * lv).exp() * torch.randn_like(q_mu)
            squared = (x - z @ W.T - b).pow(2).sum(-1)
        else:
            squared = (x - q_mu @ W.T - b).pow(2).sum(-1)
            if spread:
                squared = squared + (lv.exp() * W.pow(2).sum(0)).sum(-1)
        value = -squared / ((2 if half else 1) * s)
        if const:
            value = value - 0.5 * x.shape[-1] * math.log(2 * math.pi * s)
        klv = kl_to_standard_normal(q_mu, lv)
        value = value + kl_sign * (klv / q_mu.shape[-1] if kl_mean else klv)
        if negate:
            value = -value
        return value.mean() if batch_mean else value
    return elbo


ELBO_MISTAKES = [
    ("forgetting the spread of z under q", dict(spread=False)),
    ("forgetting the normalizing constant", dict(const=False)),
    ("a sign error: the ELBO subtracts KL", dict(kl_sign=1.0)),
    ("the KL term missing", dict(kl_sign=0.0)),
    ("logvar used as a log standard deviation", dict(lv_scale=2.0)),
    ("a missing 1/2", dict(half=False)),
    ("noise_var squared", dict(square_s=True)),
    ("the KL averaged over the latent dimensions", dict(kl_mean=True)),
    ("log p(x) itself", dict(evidence=True)),
    ("the negative ELBO", dict(negate=True)),
    ("one number for the whole batch", dict(batch_mean=True)),
]


@pytest.mark.parametrize("phrase, flags", ELBO_MISTAKES, ids=[m[0] for m in ELBO_MISTAKES])
def test_elbo_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_elbo", phrase, elbo=_elbo(**flags))


def test_elbo_monte_carlo_with_many_samples_is_named(lab):
    def elbo(model, x, q_mu, q_logvar):   # a good estimate, but random: not the closed form
        z = q_mu + (0.5 * q_logvar).exp() * torch.randn(4000, *q_mu.shape, dtype=q_mu.dtype)
        log_lik = Normal(z @ model.W.T + model.b, math.sqrt(model.noise_var)).log_prob(x).sum(-1)
        return log_lik.mean(0) - kl_to_standard_normal(q_mu, q_logvar)
    lab.fails_with("test_elbo", "values differ", elbo=elbo)


def test_elbo_single_sample_is_named(lab):
    lab.fails_with("test_elbo", "differ", elbo=_elbo(sample=True))


def test_elbo_alternative_with_trace_and_kl_diag_passes(lab):
    def elbo(model, x, q_mu, q_logvar):
        D = model.W.shape[0]
        mean_x = q_mu @ model.W.T + model.b
        trace = torch.einsum("dk,nk,dk->n", model.W, q_logvar.exp(), model.W)
        rec = -0.5 * (((x - mean_x) ** 2).sum(1) + trace) / model.noise_var \
            - D / 2 * math.log(2 * math.pi) - D / 2 * math.log(model.noise_var)
        return rec - kl.kl_diag_gaussians(q_mu, q_logvar, 0.0, 0.0)
    lab.run("test_elbo", elbo=elbo)


def test_elbo_alternative_via_the_identity_passes(lab):
    """log p(x) - KL(q || posterior): correct, if roundabout."""
    def elbo(model, x, q_mu, q_logvar):
        mean, cov = model.posterior(x)
        q = MultivariateNormal(q_mu, torch.diag_embed(q_logvar.exp()))
        return model.log_marginal(x) - torch.distributions.kl_divergence(q, MultivariateNormal(mean, cov))
    lab.run("test_elbo", elbo=elbo)


# --------------------------------------------------------------------------- the lab's figures (fast)

def test_the_labs_figures_in_fast_mode():
    """What the notebook prints, checked loosely at fast-mode sizes: Monte Carlo within a few
    standard errors with the derived per-sample s.d. (0.729); the reverse KL picks a mode and the
    forward KL the moments; gradient ascent on the ELBO reaches the mean-field optimum."""
    q = Normal(torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    p = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    estimate, se = kl.kl_monte_carlo(q, p, 10_000, generator=torch.Generator().manual_seed(8))
    assert abs(estimate.item() - 0.818147) < 4 * se.item()
    assert se.item() * 100 == pytest.approx(0.7289, rel=0.03)
    target = kl.gaussian_mixture([0.5, 0.5], [-2.5, 2.5], [0.7, 0.7])
    m, s = kl.fit_gaussian(target, "reverse", mu0=1.0)
    assert abs(m - 2.5) < 0.05 and abs(s - 0.7) < 0.05
    g = torch.Generator().manual_seed(4)
    model = kl.LinearGaussianModel(torch.randn(5, 3, generator=g, dtype=torch.float64),
                                   torch.randn(5, generator=g, dtype=torch.float64), 0.4)
    x = torch.randn(1, 5, generator=g, dtype=torch.float64)
    mean, cov = model.posterior(x)
    q_mu = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    q_logvar = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([q_mu, q_logvar], lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        (-kl.elbo(model, x, q_mu, q_logvar).sum()).backward()
        optimizer.step()
    best_var = 1 / torch.diag(torch.linalg.inv(cov))
    torch.testing.assert_close(q_mu.detach(), mean, atol=1e-3, rtol=0)
    torch.testing.assert_close(q_logvar.detach().exp()[0], best_var, atol=1e-3, rtol=1e-2)
    gap = (model.log_marginal(x) - kl.elbo(model, x, q_mu, q_logvar)).item()
    assert gap > 0.01
