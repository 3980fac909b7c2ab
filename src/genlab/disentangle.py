"""Reference implementations for lab 06_beta_vae (exercises in :mod:`genlab.labs`), the fully
connected β-VAE for dSprites that the lab trains, and two disentanglement metrics: MIG (an
exercise) and the BetaVAE score.

The metrics follow google-research/disentanglement_lib (``evaluation/metrics/mig.py``,
``beta_vae.py`` and ``utils.py``): codes are the posterior means; MIG discretizes each code
dimension into 20 equal-width bins between its own minimum and maximum, on 10,000 points drawn
uniformly from the factors; the BetaVAE score trains a logistic regression on 10,000 and tests
it on 5,000 points, each the mean absolute difference of 64 pairs of codes that share one factor.
"""
from __future__ import annotations

import torch
from torch import nn

from . import dsprites
from .device import model_device
from .training import evaluating, predict
from .vae import elbo_loss, reparameterize

__all__ = ["beta_vae_loss", "kl_per_dimension", "active_units", "latent_traversal",
           "mutual_information_gap", "discretize", "mutual_info_matrix", "factor_entropy",
           "mig_per_factor", "MLPBetaVAE", "encode_means", "mig_of_model", "betavae_score",
           "capacity_loss"]


# --------------------------------------------------------------------------- exercises

def beta_vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(recon + beta * kl, recon, kl)`` in nats per image, with lab 04's semantics: recon is the
    batch mean of each image's summed Bernoulli cross-entropy (from logits), kl the batch mean of
    ``KL(q(z|x) || N(0, I))`` summed over the latent dimensions."""
    if logits.shape != x.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and x {tuple(x.shape)} must have the "
                         "same shape")
    if mu.shape != logvar.shape or mu.dim() != 2 or len(mu) != len(x):
        raise ValueError(f"mu and logvar must both be (N, D) with N = {len(x)}, got "
                         f"{tuple(mu.shape)} and {tuple(logvar.shape)}")
    return elbo_loss(logits, x, mu, logvar, beta)


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``(D,)``: for each latent dimension j, the batch mean of
    ``KL(N(mu_j, exp(logvar_j)) || N(0, 1)) = 0.5 (mu_j² + exp(logvar_j) - 1 - logvar_j)``.
    The entries sum to the batch mean of :func:`genlab.vae.kl_to_standard_normal`."""
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ValueError(f"mu and logvar must both be (N, D), got {tuple(mu.shape)} and "
                         f"{tuple(logvar.shape)}")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """How many latent dimensions are *active* (Burda et al. 2016): those whose posterior mean
    varies over the data, ``Var_x[mu_j(x)] > threshold`` (unbiased variance over the rows of
    ``mu``, one row per data point)."""
    if mu.dim() != 2 or len(mu) < 2:
        raise ValueError(f"mu must be (N, D) with N >= 2, got {tuple(mu.shape)}")
    return int((mu.detach().var(0) > threshold).sum().item())


@torch.no_grad()
def latent_traversal(model: nn.Module, x: torch.Tensor, dim: int, values) -> torch.Tensor:
    """Decode image ``x``'s posterior mean with latent dimension ``dim`` set to each of ``values``
    in turn: ``(len(values), C, H, W)`` pixel probabilities in [0, 1], on ``x``'s device.

    ``x`` is one image, ``(C, H, W)`` or ``(1, C, H, W)``. The model runs in eval mode; its
    training mode is restored afterwards.
    """
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or len(x) != 1:
        raise ValueError(f"x must be one image, (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
    with evaluating(model):
        mu, _ = model.encode(x.to(model_device(model)))
        if not -mu.shape[1] <= dim < mu.shape[1]:
            raise IndexError(f"dim {dim} is out of range for {mu.shape[1]} latent dimensions")
        values = torch.as_tensor(values, dtype=mu.dtype, device=mu.device).reshape(-1)
        z = mu.repeat(len(values), 1)
        z[:, dim] = values
        images = torch.sigmoid(model.decode(z))
    return images.to(x.device)


# --------------------------------------------------------------------------- MIG

def _left_edges(lo: torch.Tensor, hi: torch.Tensor, n_bins: int) -> torch.Tensor:
    """``(D, n_bins)``: ``np.linspace(lo[j], hi[j], n_bins + 1)[:-1]`` for each column j, with
    NumPy's arithmetic in ``lo``'s dtype: ``k * step + lo`` with ``step = (hi - lo) / n_bins``,
    or ``(k / n_bins) * (hi - lo) + lo`` where that step underflows to 0 (NumPy gh-5437)."""
    k = torch.arange(n_bins, dtype=lo.dtype, device=lo.device)
    delta = (hi - lo)[:, None]
    step = delta / n_bins
    scaled = torch.where(step == 0, k / n_bins * delta, k * step)
    return scaled + lo[:, None]


def _histogram_labels(c: torch.Tensor, n_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels 0..n_bins-1 of ``c (N, D)`` with edges computed in ``c``'s dtype, and a ``(D,)``
    mask of the columns whose edges do not increase strictly (where NumPy raises "Too many
    bins for data range")."""
    lo, hi = c.min(0).values, c.max(0).values
    flat = lo == hi  # np.histogram's rule for a constant column: the range [v - 0.5, v + 0.5]
    lo, hi = torch.where(flat, lo - 0.5, lo), torch.where(flat, hi + 0.5, hi)
    edges = _left_edges(lo, hi, n_bins)                       # (D, n_bins): the left edges
    all_edges = torch.cat([edges, hi[:, None]], 1)            # np.linspace puts hi last
    collapsed = (all_edges[:, 1:] <= all_edges[:, :-1]).any(1)
    labels = (c.T[:, :, None] >= edges[:, None, :]).sum(-1).T.sub(1).clamp_min(0)
    return labels, collapsed


def discretize(codes: torch.Tensor, n_bins: int = 20) -> torch.Tensor:
    """Histogram-discretize each column of ``codes (N, D)`` into ``n_bins`` equal-width bins
    between that column's minimum and maximum: int64 labels in 0..n_bins-1.

    The same bins as disentanglement_lib's ``_histogram_discretize`` (``np.digitize(x,
    np.histogram(x, n_bins)[1][:-1])``, which numbers them 1..n_bins), bit for bit: NumPy
    computes the edges ``min + k * ((max - min) / n_bins)`` in the codes' own precision
    (float32 codes get float32 edges, so a float32 value near an edge can land in another bin
    than float64 edges would put it) and compares the codes with them in that precision; so
    does this function, for float16, float32 and float64 codes (bfloat16 codes are binned as
    float32, integer codes as float64, as NumPy would bin the array they convert to). A value
    on an inner edge goes to the bin above it, the maximum to the last bin. A constant column
    lands in a single bin (the middle one, as NumPy's range ``[v - 0.5, v + 0.5]`` puts it).

    Where NumPy refuses a column ("Too many bins for data range": its range is so narrow that
    the float32 or float16 edges do not increase strictly), that column's edges are computed
    in float64 instead. NaN or inf codes raise ValueError (NumPy raises too: the range is not
    finite).
    """
    if codes.dim() != 2:
        raise ValueError(f"codes must be (N, D), got {tuple(codes.shape)}")
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    c = codes.detach()
    if c.dtype == torch.bfloat16:
        c = c.float()
    elif c.dtype not in (torch.float16, torch.float32, torch.float64):
        c = c.double()
    bad = ~torch.isfinite(c)
    if bool(bad.any()):
        columns = bad.any(0).nonzero().flatten().tolist()
        raise ValueError(f"codes contain NaN or inf values ({int(bad.sum())} of them, in "
                         f"column(s) {columns}); a latent code must be finite")
    labels, collapsed = _histogram_labels(c, n_bins)
    if c.dtype != torch.float64 and bool(collapsed.any()):
        columns = collapsed.nonzero().flatten()
        labels[:, columns] = _histogram_labels(c[:, columns].double(), n_bins)[0]
    return labels


def _relabel(column: torch.Tensor) -> tuple[torch.Tensor, int]:
    values, labels = torch.unique(column, return_inverse=True)
    return labels, len(values)


def _entropy(labels: torch.Tensor, n_values: int) -> torch.Tensor:
    p = torch.bincount(labels, minlength=n_values).double() / len(labels)
    p = p[p > 0]
    return -(p * p.log()).sum()


def _mutual_info(a: torch.Tensor, na: int, b: torch.Tensor, nb: int) -> torch.Tensor:
    """I(a; b) in nats from the joint histogram of two label vectors (as sklearn's
    ``mutual_info_score``)."""
    joint = torch.bincount(a * nb + b, minlength=na * nb).double().reshape(na, nb) / len(a)
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return (joint[nz] * (joint[nz] / (pa * pb)[nz]).log()).sum().clamp_min(0.0)


def _check_pair(codes: torch.Tensor, factors: torch.Tensor) -> None:
    if not isinstance(codes, torch.Tensor) or not isinstance(factors, torch.Tensor):
        raise TypeError("codes and factors must be tensors")
    if codes.dim() != 2 or factors.dim() != 2 or len(codes) != len(factors):
        raise ValueError(f"codes (N, D) and factors (N, K) must have the same N, got "
                         f"{tuple(codes.shape)} and {tuple(factors.shape)}")
    if factors.is_floating_point() or factors.is_complex():
        raise TypeError(f"factors must be integer classes, got {factors.dtype}")
    if len(codes) < 2:
        raise ValueError("need at least two points")


def mutual_info_matrix(codes: torch.Tensor, factors: torch.Tensor,
                       n_bins: int = 20) -> torch.Tensor:
    """``(D, K)`` float64: ``I(discretized code j; factor k)`` in nats, as disentanglement_lib's
    ``discrete_mutual_info``."""
    _check_pair(codes, factors)
    binned = discretize(codes, n_bins)
    labelled = [_relabel(f) for f in factors.long().T]
    m = torch.empty(codes.shape[1], factors.shape[1], dtype=torch.float64, device=codes.device)
    for j in range(codes.shape[1]):
        a, na = _relabel(binned[:, j])
        for k, (b, nb) in enumerate(labelled):
            m[j, k] = _mutual_info(a, na, b.to(a.device), nb)
    return m


def factor_entropy(factors: torch.Tensor) -> torch.Tensor:
    """``(K,)`` float64: the entropy in nats of each factor's empirical distribution."""
    if factors.dim() != 2 or factors.is_floating_point():
        raise ValueError(f"factors must be (N, K) integer classes, got {tuple(factors.shape)} "
                         f"{factors.dtype}")
    return torch.stack([_entropy(*_relabel(f)) for f in factors.long().T])


def mig_per_factor(codes: torch.Tensor, factors: torch.Tensor, n_bins: int = 20) -> torch.Tensor:
    """``(K,)``: for each factor, (largest - second largest MI with a code dimension) / entropy."""
    m = mutual_info_matrix(codes, factors, n_bins)
    if m.shape[0] < 2:
        raise ValueError("MIG needs at least two code dimensions (it is a gap between two)")
    h = factor_entropy(factors).to(m.device)
    if (h <= 0).any():
        bad = (h <= 0).nonzero().flatten().tolist()
        raise ValueError(f"factor column(s) {bad} take a single value: their entropy is 0 and the "
                         "gap cannot be normalized")
    top = m.topk(2, dim=0).values
    return (top[0] - top[1]) / h


def mutual_information_gap(codes: torch.Tensor, factors: torch.Tensor, n_bins: int = 20) -> float:
    """MIG (Chen et al. 2018) as disentanglement_lib computes it: discretize each code dimension
    into ``n_bins`` equal-width bins, take the mutual information of every (code, factor) pair,
    and average over the factors the gap between the two most informative code dimensions
    divided by the factor's entropy. In [0, 1]; 1 means one code dimension per factor.

    Codes with NaN or inf values raise ValueError (see :func:`discretize`)."""
    return float(mig_per_factor(codes, factors, n_bins).mean())


# --------------------------------------------------------------------------- the model

class MLPBetaVAE(nn.Module):
    """The fully connected β-VAE that Higgins et al. (2017) trained on dSprites, slimmed for a
    CPU: the image (``image_size`` x ``image_size``, 32 by default: see
    :func:`genlab.dsprites.shrink`) is flattened, two hidden ReLU layers give ``mu`` and
    ``logvar``; the decoder has two tanh hidden layers and returns logits of the image's shape.

    The paper used 64x64 images and ``hidden=1200`` (lab 6's GPU budget); at 32x32 and
    ``hidden=256`` a training step is cheap enough that a laptop can afford the several thousand
    steps that disentangling needs.
    """

    def __init__(self, latent_dim: int = 10, image_size: int = 32, hidden: int = 256):
        super().__init__()
        self.latent_dim, self.image_size = latent_dim, image_size
        pixels = image_size * image_size
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(),
                                     nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, pixels),
                                     nn.Unflatten(1, (1, image_size, image_size)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tuple(x.shape[1:]) != (1, self.image_size, self.image_size):
            raise ValueError(f"expected images (N, 1, {self.image_size}, {self.image_size}), got "
                             f"{tuple(x.shape)} (dsprites.shrink makes smaller images)")
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode_probs(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities ``sigmoid(decode(z))``, e.g. for the plotting helpers."""
        return torch.sigmoid(self.decode(z))

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar


def encode_means(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Posterior means ``(N, D)`` of ``images`` (float, uint8 or bool; moved batch by batch to
    the model's device), on the CPU; eval mode, training mode restored."""
    means = predict(model, images, lambda batch: model.encode(batch.float())[0], batch_size)
    return means.cpu()


def _images_for(model: nn.Module, classes: torch.Tensor) -> torch.Tensor:
    """dSprites images of these factor classes at the size the model reads (its
    ``image_size``, 64 when it has none)."""
    return dsprites.shrink(dsprites.render_classes(classes, dtype=torch.uint8),
                           getattr(model, "image_size", dsprites.IMAGE_SIZE))


def mig_of_model(model: nn.Module, n_points: int = 10_000, n_bins: int = 20,
                 generator: torch.Generator | None = None, fixed=None) -> dict:
    """MIG of ``model`` on dSprites as disentanglement_lib measures it: ``n_points`` factor
    combinations drawn uniformly (with replacement), rendered (at the model's ``image_size``)
    and encoded to their posterior means. ``fixed`` (``{factor name: class}``) scores a slice of
    dSprites: those factors are held and left out of the score. Returns ``{"mig": float,
    "per_factor": (K,), "mi": (D, K) nats, "entropy": (K,), "codes": (N, D), "factors": (N, K)}``
    over the K factors that vary."""
    drawn = dsprites.sample_classes(n_points, generator=generator, fixed=fixed).cpu()
    classes = drawn[:, dsprites.varying_factors(fixed)]
    codes = torch.cat([encode_means(model, _images_for(model, drawn[i:i + 4096]))
                       for i in range(0, n_points, 4096)])
    per_factor = mig_per_factor(codes, classes, n_bins)
    return {"mig": float(per_factor.mean()), "per_factor": per_factor,
            "mi": mutual_info_matrix(codes, classes, n_bins), "entropy": factor_entropy(classes),
            "codes": codes, "factors": classes}


def betavae_score(model: nn.Module, n_train: int = 10_000, n_eval: int = 5_000,
                  batch_size: int = 64, generator: torch.Generator | None = None,
                  fixed=None) -> dict:
    """The BetaVAE disentanglement score (Higgins et al. 2017), as disentanglement_lib computes it.

    Each point: pick a factor k uniformly, draw ``batch_size`` pairs of factor combinations that
    agree on factor k (everything else independent), encode both images of every pair to their
    posterior means (images at the model's ``image_size``), and average ``|z1 - z2|`` over the
    pairs. A logistic regression learns to tell k from that vector on ``n_train`` points; the
    score is its accuracy on ``n_eval`` fresh points (chance: 1/5, or one over the number of
    factors that vary when ``fixed`` holds some, as in :func:`mig_of_model`). Returns
    ``{"train_accuracy": float, "eval_accuracy": float}``.
    """
    from sklearn.linear_model import LogisticRegression

    free = torch.tensor(dsprites.varying_factors(fixed))

    def points(n):
        k = free[torch.randint(0, len(free), (n,), generator=generator,
                               device=generator.device if generator is not None else "cpu").cpu()]
        first = dsprites.sample_classes(n * batch_size, generator=generator, fixed=fixed).cpu()
        second = dsprites.sample_classes(n * batch_size, generator=generator, fixed=fixed).cpu()
        rows = torch.arange(n * batch_size)
        shared = k.repeat_interleave(batch_size)
        second[rows, shared] = first[rows, shared]
        features = []
        step = max(1, 4096 // batch_size) * batch_size
        for i in range(0, n * batch_size, step):
            z1 = encode_means(model, _images_for(model, first[i:i + step]))
            z2 = encode_means(model, _images_for(model, second[i:i + step]))
            features.append((z1 - z2).abs().reshape(-1, batch_size, z1.shape[1]).mean(1))
        return torch.cat(features).double().numpy(), k.numpy()

    x_train, y_train = points(n_train)
    x_eval, y_eval = points(n_eval)
    classifier = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    return {"train_accuracy": float(classifier.score(x_train, y_train)),
            "eval_accuracy": float(classifier.score(x_eval, y_eval))}


# --------------------------------------------------------------------------- extension

def capacity_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  gamma: float, capacity: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Burgess et al. (2018): ``recon + gamma * |kl - capacity|``, the KL pulled towards a target
    ``capacity`` (nats) that grows during training instead of pushed towards 0. Returns
    ``(loss, recon, kl)`` like :func:`beta_vae_loss`."""
    _, recon, kl = elbo_loss(logits, x, mu, logvar, 1.0)
    return recon + gamma * (kl - capacity).abs(), recon, kl
