"""Reference implementations for lab 05_kl_divergence (exercises in :mod:`genlab.labs`).

Conventions: a univariate Gaussian is given by its mean and *standard deviation* (``sigma``);
a diagonal Gaussian by its mean and *log-variance* (``logvar = log sigma^2``), as a VAE encoder
outputs it. KL(q || p) always puts the expectation under the first argument.

The linear-Gaussian model ``z ~ N(0, I_K)``, ``x | z ~ N(W z + b, noise_var I_D)`` is the one
latent-variable model whose evidence ``log p(x)`` and posterior ``p(z | x)`` are exact, so it
makes ``log p(x) = ELBO(q) + KL(q || p(z | x))`` checkable to the last digit.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Distribution, MultivariateNormal, Normal

from .sampling import draw_samples  # noqa: F401 - part of this module's API, as before
from .vae import kl_to_standard_normal

__all__ = ["kl_univariate", "kl_diag_gaussians", "kl_monte_carlo", "draw_samples",
           "LinearGaussianModel", "elbo", "expected_log_likelihood", "gaussian_mixture",
           "kl_gaussian_mixture", "fit_gaussian"]

_LOG_2PI = math.log(2.0 * math.pi)


def _as_float_tensor(value, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        dtype = like.dtype if like is not None else torch.get_default_dtype()
        device = like.device if like is not None else None
        return torch.tensor(float(value), dtype=dtype, device=device)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or a number, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    return value


def _first_tensor(*values) -> torch.Tensor | None:
    return next((v for v in values if isinstance(v, torch.Tensor)), None)


# --------------------------------------------------------------------------- closed forms

def kl_univariate(mu1, sigma1, mu2, sigma2) -> torch.Tensor:
    """``KL(N(mu1, sigma1^2) || N(mu2, sigma2^2))`` elementwise (arguments broadcast).

    ``log(sigma2 / sigma1) + (sigma1^2 + (mu1 - mu2)^2) / (2 sigma2^2) - 1/2``; the sigmas are
    standard deviations and must be positive.

    Computed as ``torch.distributions`` does (``_kl_normal_normal``), dividing before squaring:
    ``r = sigma1 / sigma2``, ``0.5 (r^2 + ((mu1 - mu2) / sigma2)^2 - 1) - log r``. Squaring
    first underflows (``(1e-30)^2 == 0`` in float32) and turns equal tiny sigmas into ``0 / 0 =
    NaN``. When ``r`` itself underflows or overflows, ``log r`` is taken as ``log sigma1 - log
    sigma2`` so that the value stays finite where the KL is (``torch.distributions`` gives inf
    there).
    """
    like = _first_tensor(mu1, sigma1, mu2, sigma2)
    mu1, sigma1, mu2, sigma2 = (_as_float_tensor(v, n, like) for v, n in
                                zip((mu1, sigma1, mu2, sigma2), ("mu1", "sigma1", "mu2", "sigma2")))
    if bool((sigma1 <= 0).any()) or bool((sigma2 <= 0).any()):
        raise ValueError("sigma1 and sigma2 are standard deviations and must be positive")
    ratio = sigma1 / sigma2
    normal = (ratio >= torch.finfo(ratio.dtype).tiny) & torch.isfinite(ratio)
    log_ratio = torch.where(normal, torch.where(normal, ratio, 1.0).log(),  # no NaN gradients
                            sigma1.log() - sigma2.log())
    t1 = ((mu1 - mu2) / sigma2).pow(2)
    return 0.5 * (ratio.pow(2) + t1 - 1.0 - 2.0 * log_ratio)


def kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p) -> torch.Tensor:
    """Per-sample ``KL(N(mu_q, diag e^logvar_q) || N(mu_p, diag e^logvar_p))``.

    The KL of a product of independent coordinates is the sum of the coordinates' KLs, so this
    sums the univariate formula over the last dimension; the arguments broadcast (``mu_p`` and
    ``logvar_p`` may be numbers, e.g. 0 and 0 for the standard normal prior).

    Per coordinate ``0.5 (e^(logvar_q - logvar_p) + ((mu_q - mu_p) e^(-logvar_p / 2))^2 - 1
    - (logvar_q - logvar_p))``: the variance ratio is the exponential of a difference, as
    ``torch.distributions`` divides the scales before squaring. Exponentiating each log-variance
    first overflows (``e^800`` in float64, ``e^100`` in float32) into ``inf / inf = NaN``.
    """
    like = _first_tensor(mu_q, logvar_q, mu_p, logvar_p)
    mu_q, logvar_q, mu_p, logvar_p = (
        _as_float_tensor(v, n, like) for v, n in
        zip((mu_q, logvar_q, mu_p, logvar_p), ("mu_q", "logvar_q", "mu_p", "logvar_p")))
    shape = torch.broadcast_shapes(mu_q.shape, logvar_q.shape, mu_p.shape, logvar_p.shape)
    if len(shape) == 0:
        raise ValueError("kl_diag_gaussians needs at least one dimension to sum over "
                         "(the last dimension holds the coordinates)")
    log_ratio = logvar_q - logvar_p
    t1 = ((mu_q - mu_p) * (-0.5 * logvar_p).exp()).pow(2)
    per_dim = 0.5 * (log_ratio.exp() + t1 - 1.0 - log_ratio)
    return per_dim.expand(shape).sum(-1)


# --------------------------------------------------------------------------- Monte Carlo

def kl_monte_carlo(q: Distribution, p: Distribution, n: int,
                   generator: torch.Generator | None = None):
    """Monte Carlo estimate of ``KL(q || p)`` from ``n`` samples of ``q``, with its standard error.

    With ``z_i ~ q``, the values ``f_i = log q(z_i) - log p(z_i)`` have mean KL(q || p); the
    estimate is their average and its standard error ``std(f) / sqrt(n)`` (unbiased ``std``).
    Returns ``(estimate, standard_error)``, tensors of shape ``q.batch_shape``.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 2:
        raise ValueError(f"n must be at least 2 to estimate a standard error, got {n}")
    z = draw_samples(q, n, generator)
    f = q.log_prob(z) - p.log_prob(z)
    return f.mean(0), f.std(0) / math.sqrt(n)


# --------------------------------------------------------------------------- linear-Gaussian model

class LinearGaussianModel:
    """``z ~ N(0, I_K)``, ``x | z ~ N(W z + b, noise_var I_D)`` with ``W (D, K)``, ``b (D,)``.

    Everything about it is Gaussian and exact: the evidence ``x ~ N(b, W W^T + noise_var I)``
    (:meth:`log_marginal`) and the posterior (:meth:`posterior`). Probabilistic PCA (Tipping &
    Bishop, 1999) is this model fitted to data.
    """

    def __init__(self, W: torch.Tensor, b: torch.Tensor, noise_var: float):
        if not isinstance(W, torch.Tensor) or W.dim() != 2 or not W.is_floating_point():
            raise ValueError("W must be a floating-point tensor of shape (D, K)")
        if not isinstance(b, torch.Tensor) or tuple(b.shape) != (W.shape[0],):
            raise ValueError(f"b must be a tensor of shape ({W.shape[0]},) to match W "
                             f"{tuple(W.shape)}")
        noise_var = float(noise_var)
        if not noise_var > 0:
            raise ValueError(f"noise_var is a variance and must be positive, got {noise_var}")
        self.W, self.b, self.noise_var = W, b.to(W), noise_var

    @property
    def data_dim(self) -> int:
        return self.W.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.W.shape[1]

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"x must be a tensor of shape (N, {self.data_dim}), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return x.to(self.W.dtype)

    def marginal(self) -> MultivariateNormal:
        """The evidence distribution ``p(x) = N(b, W W^T + noise_var I)``."""
        eye = torch.eye(self.data_dim, dtype=self.W.dtype, device=self.W.device)
        return MultivariateNormal(self.b, self.W @ self.W.T + self.noise_var * eye)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample ``log p(x)`` for ``x (N, D)``."""
        return self.marginal().log_prob(self._check_x(x))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``p(z | x) = N(mean, cov)``: ``mean (N, K)`` and ``cov (K, K)``, the same for every x.

        Bayes' rule with a Gaussian prior and likelihood: the precision is
        ``I + W^T W / noise_var``, ``cov`` its inverse, ``mean = cov W^T (x - b) / noise_var``.
        """
        x = self._check_x(x)
        eye = torch.eye(self.latent_dim, dtype=self.W.dtype, device=self.W.device)
        precision = eye + self.W.T @ self.W / self.noise_var
        cov = torch.cholesky_inverse(torch.linalg.cholesky(precision))
        mean = (x - self.b) @ self.W @ cov / self.noise_var   # cov is symmetric
        return mean, cov

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)``, summed over the D coordinates; ``z (..., N, K)`` broadcasts with x."""
        x = self._check_x(x)
        mean = z @ self.W.T + self.b
        return -0.5 * ((x - mean).pow(2) / self.noise_var + _LOG_2PI
                       + math.log(self.noise_var)).sum(-1)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``log N(z; 0, I)`` summed over the K coordinates."""
        return -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None):
        """``(z, x)``: ``n`` draws from the joint, reproducible with a CPU ``generator``."""
        where = generator.device if generator is not None else self.W.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=where, dtype=self.W.dtype)
        eps = torch.randn(n, self.data_dim, generator=generator, device=where, dtype=self.W.dtype)
        z, eps = z.to(self.W.device), eps.to(self.W.device)
        return z, z @ self.W.T + self.b + math.sqrt(self.noise_var) * eps


def expected_log_likelihood(model: LinearGaussianModel, x: torch.Tensor, q_mu: torch.Tensor,
                            q_logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample ``E_q[log p(x | z)]`` for ``q = N(q_mu, diag e^q_logvar)``, in closed form.

    ``E_q ||x - W z - b||^2 = ||x - W q_mu - b||^2 + sum_k sigma_k^2 ||W[:, k]||^2``.
    """
    x = model._check_x(x)
    if q_mu.shape != q_logvar.shape or q_mu.shape[-1] != model.latent_dim:
        raise ValueError(f"q_mu and q_logvar must both have shape (N, {model.latent_dim}), got "
                         f"{tuple(q_mu.shape)} and {tuple(q_logvar.shape)}")
    residual = x - q_mu @ model.W.T - model.b
    spread = (q_logvar.exp() * model.W.pow(2).sum(0)).sum(-1)
    squared = residual.pow(2).sum(-1) + spread
    return -0.5 * model.data_dim * (_LOG_2PI + math.log(model.noise_var)) \
        - squared / (2 * model.noise_var)


def elbo(model: LinearGaussianModel, x: torch.Tensor, q_mu: torch.Tensor,
         q_logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample ELBO ``E_q[log p(x | z)] - KL(q || p(z))`` for a diagonal Gaussian ``q``.

    Closed form; the KL term is lab 04's :func:`genlab.vae.kl_to_standard_normal`, the same
    function the VAE loss uses.
    """
    return expected_log_likelihood(model, x, q_mu, q_logvar) - kl_to_standard_normal(q_mu, q_logvar)


# --------------------------------------------------------------------------- fitting one Gaussian

def gaussian_mixture(weights, means, stds, dtype=torch.float64):
    """A 1-D mixture of Gaussians as a ``torch.distributions.MixtureSameFamily``."""
    from torch.distributions import Categorical, MixtureSameFamily
    w, m, s = (torch.as_tensor(v, dtype=dtype) for v in (weights, means, stds))
    return MixtureSameFamily(Categorical(probs=w / w.sum()), Normal(m, s))


def _nodes(nodes: int, dtype, device):
    """Points t and weights w with sum_i w_i f(t_i) ~ E[f(e)], e ~ N(0, 1): the trapezoid rule on
    [-10, 10]. (Gauss-Hermite needs a smooth f; the log of a mixture has a near-kink between
    its modes, which the fine uniform grid handles.)"""
    t = torch.linspace(-10.0, 10.0, nodes, dtype=dtype, device=device)
    w = torch.exp(-0.5 * t.pow(2)) * (t[1] - t[0]) / math.sqrt(2 * math.pi)
    return t, w


def _log_normal(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma).pow(2) - torch.log(sigma) - 0.5 * _LOG_2PI


def _mixture_parts(mixture):
    comp = mixture.component_distribution
    return mixture.mixture_distribution.probs, comp.loc, comp.scale


def _log_mixture(x, mixture):
    pi, loc, scale = _mixture_parts(mixture)
    return torch.logsumexp(torch.log(pi) + _log_normal(x.unsqueeze(-1), loc, scale), dim=-1)


def kl_gaussian_mixture(mu, sigma, mixture, direction: str = "reverse",
                        nodes: int = 401) -> torch.Tensor:
    """KL between ``q = N(mu, sigma^2)`` and a 1-D Gaussian mixture ``p``, by quadrature.

    ``direction="reverse"``: ``KL(q || p)`` (what variational inference minimizes);
    ``"forward"``: ``KL(p || q)`` (what maximum likelihood minimizes). ``mu`` and ``sigma``
    broadcast, and the result is differentiable in both. ``mixture`` is a
    ``MixtureSameFamily`` of 1-D normals, e.g. from :func:`gaussian_mixture`.
    """
    mu, sigma = torch.as_tensor(mu, dtype=torch.float64), torch.as_tensor(sigma, dtype=torch.float64)
    mu, sigma = torch.broadcast_tensors(mu, sigma)
    t, w = _nodes(nodes, mu.dtype, mu.device)
    if direction == "reverse":       # E_q[log q - log p], nodes placed on q
        points = mu.unsqueeze(-1) + sigma.unsqueeze(-1) * t
        log_q = _log_normal(points, mu.unsqueeze(-1), sigma.unsqueeze(-1))
        return ((log_q - _log_mixture(points, mixture)) * w).sum(-1)
    if direction == "forward":       # sum_c pi_c E_{N_c}[log p - log q], nodes on each component
        pi, loc, scale = _mixture_parts(mixture)
        points = loc.unsqueeze(-1) + scale.unsqueeze(-1) * t                  # (C, nodes)
        log_q = _log_normal(points, mu[..., None, None], sigma[..., None, None])
        inner = ((_log_mixture(points, mixture) - log_q) * w).sum(-1)         # (..., C)
        return (inner * pi).sum(-1)
    raise ValueError(f"direction must be 'reverse' or 'forward', got {direction!r}")


def fit_gaussian(mixture, direction: str = "reverse", mu0: float = 0.5,
                 sigma0: float = 1.0) -> tuple[float, float]:
    """The ``(mu, sigma)`` of the Gaussian ``q`` that minimizes a KL to a 1-D mixture ``p``.

    A local search (Nelder-Mead on ``mu`` and ``log sigma``) from ``(mu0, sigma0)``. The reverse
    KL ``KL(q || p)`` has one local minimum per well-separated mode, so the start picks the mode;
    the forward KL ``KL(p || q)`` has a single minimum, the moment match.
    """
    from scipy.optimize import minimize

    def objective(params):
        return kl_gaussian_mixture(params[0], math.exp(params[1]), mixture, direction).item()

    result = minimize(objective, np.array([float(mu0), math.log(sigma0)]), method="Nelder-Mead",
                      options={"xatol": 1e-7, "fatol": 1e-12, "maxiter": 2000})
    return float(result.x[0]), float(math.exp(result.x[1]))
