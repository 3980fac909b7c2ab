"""Lab 08 autograder tests are fair and discriminating.

For every exercise of notebooks/08_wgan.py: the model solution, the library's reference and
correct alternative implementations pass its test cell (visible and hidden); the stub, objects
that claim to equal everything, and typical mistakes fail, each mistake with a message that
names it.
"""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genlab import labs, wgan
from genlab.testing import AlwaysEqual, EqualTensor, LabHarness, stub

LAB = labs.get("08_wgan")
SOURCE = LAB.source(Path(__file__).resolve().parents[1])
EXERCISES = LAB.exercise_names
POINTS = LAB.points


@pytest.fixture(scope="module")
def lab():
    return LabHarness(SOURCE)


# Input validation is graded in its own test cell (test_<name>_errors): a function that computes
# the right thing without the checks earns the math points and loses only the errors point.
ERRORS_CELLS = [e for e in EXERCISES if f"test_{e}_errors" in POINTS]


def test_the_input_checks_have_their_own_cells():
    assert ERRORS_CELLS == ["wasserstein_1d", "clip_weights_", "gradient_penalty"]
    assert all(POINTS[f"test_{e}_errors"] == 1 for e in ERRORS_CELLS)


# ------------------------------------------- model solutions (common checks: test_lab_cells.py)

def test_model_solutions_agree_with_the_reference(lab):
    ns = lab.namespace()
    x, y = torch.randn(40), torch.rand(40)
    torch.testing.assert_close(ns["wasserstein_1d"](x, y), wgan.wasserstein_1d(x, y))
    theta = torch.linspace(-1, 1, 5)
    for key, value in wgan.parallel_lines_divergences(theta).items():
        torch.testing.assert_close(ns["parallel_lines_divergences"](theta)[key], value)
    critic = wgan.Critic(ndf=4)
    real, fake = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(
        ns["gradient_penalty"](critic, real, fake, generator=torch.Generator().manual_seed(0)),
        wgan.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0)))


# --------------------------------------------------------------------------- stubs and cheats

@pytest.mark.parametrize("name", EXERCISES)
def test_stub_fails_with_a_clear_message(lab, name):
    msg = lab.fails_with(f"test_{name}", "not implemented yet", **{name: stub})
    assert "Traceback" not in msg


@pytest.mark.parametrize("name", ERRORS_CELLS)
def test_stub_fails_the_errors_cell(lab, name):
    msg = lab.fails_with(f"test_{name}_errors", "got NotImplementedError", **{name: stub})
    assert "Traceback" not in msg


@pytest.mark.parametrize("name", ["wasserstein_1d", "critic_loss", "wgan_generator_loss",
                                  "gradient_penalty"])
def test_always_equal_tensors_fail(lab, name):
    def cheat(*args, **kwargs):
        return torch.zeros(()).as_subclass(EqualTensor)
    lab.fails_with(f"test_{name}", "tensor subclass", **{name: cheat})


def test_always_equal_dict_values_fail(lab):
    cheat = lambda theta: {k: AlwaysEqual() for k in ("tv", "kl", "js", "w1")}  # noqa: E731
    lab.fails_with("test_parallel_lines_divergences", "expected a tensor",
                   parallel_lines_divergences=cheat)
    step = lambda *a, **k: {k: AlwaysEqual() for k in  # noqa: E731
                            ("critic_loss", "wasserstein", "gp", "generator_loss")}
    lab.fails_with("test_wgan_train_step", "not a Python float", wgan_train_step=step)


def test_doing_nothing_fails_clip_weights(lab):
    lab.fails_with("test_clip_weights_", "did not change", clip_weights_=lambda critic, c: critic)


# --------------------------------------------------------------------------- exercise 1: W1

def _w1(body, check=True):
    def wasserstein_1d(x, y):
        if check and (x.dim() != 1 or y.dim() != 1 or len(x) != len(y)):
            raise ValueError("bad input")
        return body(x, y)
    return wasserstein_1d


W1_MISTAKES = [
    ("pairing x[i] with y[i] without sorting", lambda x, y: (x - y).abs().mean()),
    ("sorting only one of the two samples", lambda x, y: (x.sort().values - y).abs().mean()),
    ("the distance between the two means", lambda x, y: (x.mean() - y.mean()).abs()),
    ("W2 squared", lambda x, y: (x.sort().values - y.sort().values).pow(2).mean()),
    ("that is W2, not W1", lambda x, y: (x.sort().values - y.sort().values).pow(2).mean().sqrt()),
    ("the sum of |sort(x) - sort(y)|", lambda x, y: (x.sort().values - y.sort().values).abs().sum()),
    ("opposite orders", lambda x, y: (x.sort().values - y.sort(descending=True).values).abs().mean()),
    ("expected a torch.Tensor",
     lambda x, y: (x.sort().values - y.sort().values).abs().mean().item()),
]


@pytest.mark.parametrize("phrase, body", W1_MISTAKES, ids=[m[0] for m in W1_MISTAKES])
def test_w1_mistakes_are_named(lab, phrase, body):
    lab.fails_with("test_wasserstein_1d", phrase, wasserstein_1d=_w1(body))


def test_w1_without_checks_earns_the_math_points_only(lab):
    body = lambda x, y: (x.sort().values[:len(y)] - y.sort().values[:len(x)]).abs().mean()  # noqa: E731
    lab.run("test_wasserstein_1d", wasserstein_1d=_w1(body, check=False))
    lab.fails_with("test_wasserstein_1d_errors", "expected ValueError",
                   wasserstein_1d=_w1(body, check=False))


def test_w1_checking_only_the_number_of_elements_fails_the_errors_cell(lab):
    def wasserstein_1d(x, y):
        if x.numel() != y.numel():              # a (6,) and a (2, 3) sample get through
            raise ValueError("sizes differ")
        return (x.flatten().sort().values - y.flatten().sort().values).abs().mean()
    lab.run("test_wasserstein_1d", wasserstein_1d=wasserstein_1d)
    lab.fails_with("test_wasserstein_1d_errors", "raise ValueError unless x and y are",
                   wasserstein_1d=wasserstein_1d)


def test_w1_cut_off_from_autograd_fails(lab):
    body = lambda x, y: torch.tensor((x.sort().values - y.sort().values).abs().mean().item(),  # noqa: E731
                                     dtype=x.dtype, device=x.device)
    lab.fails_with("test_wasserstein_1d", "cut off from autograd", wasserstein_1d=_w1(body))


def test_w1_alternative_from_quantiles_passes(lab):
    def wasserstein_1d(x, y):
        if x.ndim != 1 or y.ndim != 1:
            raise ValueError("1-D only")
        if x.numel() != y.numel():
            raise ValueError("sizes differ")
        xs, _ = torch.sort(x)
        ys, _ = torch.sort(y)
        return torch.sum(torch.abs(xs - ys)) / x.numel()
    lab.run("test_wasserstein_1d", wasserstein_1d=wasserstein_1d)
    lab.run("test_wasserstein_1d_errors", wasserstein_1d=wasserstein_1d)


# --------------------------------------------------------------------------- exercise 2: lines

def _lines(tv=None, kl=None, js=None, w1=None, floats=False):
    def parallel_lines_divergences(theta):
        if not isinstance(theta, torch.Tensor):
            theta = torch.tensor(float(theta))
        apart = (theta != 0).to(theta.dtype)
        out = {"tv": apart, "kl": torch.where(theta != 0, math.inf, 0.0).to(theta.dtype),
               "js": math.log(2) * apart, "w1": theta.abs()}
        for key, fn in [("tv", tv), ("kl", kl), ("js", js), ("w1", w1)]:
            if fn is not None:
                out[key] = fn(theta, apart)
        if floats:
            out = {k: v.item() for k, v in out.items()}
        return out
    return parallel_lines_divergences


LINES_MISTAKES = [
    ("JS without the factors 1/2", dict(js=lambda t, a: 2 * math.log(2) * a)),
    ("JS in bits", dict(js=lambda t, a: a)),
    ("JS = log 2 everywhere", dict(js=lambda t, a: torch.full_like(t, math.log(2)))),
    ("TV = |theta|", dict(tv=lambda t, a: t.abs())),
    ("a finite KL", dict(kl=lambda t, a: 1e6 * a)),
    ("a value other than 0 at theta = 0", dict(kl=lambda t, a: torch.full_like(t, math.inf))),
    ("W1 = theta: a distance cannot be negative", dict(w1=lambda t, a: t)),
    ("W1 = theta squared", dict(w1=lambda t, a: t ** 2)),
    ("W1 = 1 for disjoint segments", dict(w1=lambda t, a: a)),
    ("expected a tensor", dict(floats=True)),
    ("cut off from autograd", dict(w1=lambda t, a: torch.tensor(t.detach().abs().tolist()))),
]


@pytest.mark.parametrize("phrase, flags", LINES_MISTAKES, ids=[m[0] for m in LINES_MISTAKES])
def test_lines_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_parallel_lines_divergences", phrase,
                   parallel_lines_divergences=_lines(**flags))


def test_lines_missing_key_fails(lab):
    def parallel_lines_divergences(theta):
        return {k: v for k, v in wgan.parallel_lines_divergences(theta).items() if k != "kl"}
    lab.fails_with("test_parallel_lines_divergences", "expected a dict with the keys",
                   parallel_lines_divergences=parallel_lines_divergences)


def test_lines_alternative_with_masks_passes(lab):
    def parallel_lines_divergences(theta):
        t = torch.as_tensor(theta, dtype=theta.dtype if torch.is_tensor(theta) else torch.float32)
        same = t == 0
        tv = torch.ones_like(t).masked_fill(same, 0.0)
        return {"tv": tv, "kl": torch.full_like(t, float("inf")).masked_fill(same, 0.0),
                "js": tv * math.log(2.0), "w1": torch.abs(t)}
    lab.run("test_parallel_lines_divergences", parallel_lines_divergences=parallel_lines_divergences)


# --------------------------------------------------------------------------- exercises 3-4: losses

CRITIC_LOSS_MISTAKES = [
    ("the sign flipped", lambda r, f: r.mean() - f.mean()),
    ("sums instead of means", lambda r, f: f.sum() - r.sum()),
    ("the DCGAN discriminator loss", lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean()),
    ("the generator's loss -mean(fake)", lambda r, f: -f.mean()),
    ("cut off from autograd", lambda r, f: torch.tensor((f.mean() - r.mean()).item(), device=r.device)),
]


@pytest.mark.parametrize("phrase, fn", CRITIC_LOSS_MISTAKES, ids=[m[0] for m in CRITIC_LOSS_MISTAKES])
def test_critic_loss_mistakes_are_named(lab, phrase, fn):
    lab.fails_with("test_critic_loss", phrase, critic_loss=fn)


def test_critic_loss_elementwise_difference_crashes_readably(lab):
    msg = lab.fails_with("test_critic_loss", "raised RuntimeError",
                         critic_loss=lambda r, f: (f - r).mean())
    assert "Traceback" not in msg


def test_critic_loss_alternative_passes(lab):
    lab.run("test_critic_loss", critic_loss=lambda r, f: torch.mean(f) + torch.mean(-r))


GENERATOR_LOSS_MISTAKES = [
    ("the sign flipped", lambda f: f.mean()),
    ("the sum instead of the mean", lambda f: -f.sum()),
    ("the DCGAN non-saturating loss", lambda f: F.softplus(-f).mean()),
    ("cut off from autograd", lambda f: torch.tensor(-f.mean().item(), device=f.device)),
]


@pytest.mark.parametrize("phrase, fn", GENERATOR_LOSS_MISTAKES,
                         ids=[m[0] for m in GENERATOR_LOSS_MISTAKES])
def test_generator_loss_mistakes_are_named(lab, phrase, fn):
    lab.fails_with("test_wgan_generator_loss", phrase, wgan_generator_loss=fn)


def test_generator_loss_alternative_passes(lab):
    lab.run("test_wgan_generator_loss", wgan_generator_loss=lambda f: f.sum() / -len(f))


# --------------------------------------------------------------------------- exercise 5: clipping

def _clip(kind="right", check=True):
    def clip_weights_(critic, c):
        if check and c <= 0:
            raise ValueError("c must be positive")
        with torch.no_grad():
            for name, p in critic.named_parameters():
                if kind == "no_underscore":
                    p.clamp(-c, c)
                elif kind == "weights_only":
                    if name.endswith("weight") and "norm" not in name:
                        p.clamp_(-c, c)
                elif kind == "zero_to_c":
                    p.clamp_(0, c)
                elif kind == "sign":
                    p.copy_(c * p.sign())
                elif kind == "rescale":
                    p.mul_(c / p.abs().max())
                elif kind == "gradients":
                    if p.grad is not None:
                        p.grad.clamp_(-c, c)
                else:
                    p.clamp_(-c, c)
        if kind == "new_parameters":
            for module in critic.modules():
                for name, p in list(module.named_parameters(recurse=False)):
                    setattr(module, name, torch.nn.Parameter(p.detach().clamp(-c, c)))
        return critic
    return clip_weights_


CLIP_MISTAKES = [
    ("did not change", dict(kind="no_underscore")),
    ("clipping only the weights", dict(kind="weights_only")),
    ("clamping to [0, c]", dict(kind="zero_to_c")),
    ("setting every parameter to +-c", dict(kind="sign")),
    ("rescaling the parameters", dict(kind="rescale")),
    ("gradients were clipped instead of the weights", dict(kind="gradients")),
    ("replaced by a new tensor", dict(kind="new_parameters")),
]


@pytest.mark.parametrize("phrase, flags", CLIP_MISTAKES, ids=[m[0] for m in CLIP_MISTAKES])
def test_clip_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_clip_weights_", phrase, clip_weights_=_clip(**flags))


def test_clip_without_check_earns_the_math_points_only(lab):
    lab.run("test_clip_weights_", clip_weights_=_clip(check=False))
    lab.fails_with("test_clip_weights__errors", "expected ValueError", clip_weights_=_clip(check=False))


def test_clip_rejecting_only_zero_fails_the_errors_cell(lab):
    def clip_weights_(critic, c):
        if c == 0:                              # lets a negative c through
            raise ValueError("c must not be 0")
        return _clip(check=False)(critic, c)
    lab.run("test_clip_weights_", clip_weights_=clip_weights_)
    lab.fails_with("test_clip_weights__errors", "clip_weights_(critic, c=-0.01)",
                   clip_weights_=clip_weights_)


def test_clip_without_no_grad_crashes_readably(lab):
    def clip_weights_(critic, c):
        if c <= 0:
            raise ValueError("c")
        for p in critic.parameters():
            p.clamp_(-c, c)
    msg = lab.fails_with("test_clip_weights_", "raised RuntimeError", clip_weights_=clip_weights_)
    assert "Traceback" not in msg


def test_clip_alternatives_pass(lab):
    def with_data(critic, c):
        if not c > 0:
            raise ValueError("c must be positive")
        for p in critic.parameters():
            p.data.clamp_(min=-c, max=c)
    lab.run("test_clip_weights_", clip_weights_=with_data)
    lab.run("test_clip_weights__errors", clip_weights_=with_data)

    def with_copy(critic, c):
        if c <= 0:
            raise ValueError("c must be positive")
        with torch.no_grad():
            for p in critic.parameters():
                p.copy_(torch.maximum(torch.minimum(p, torch.full_like(p, c)), torch.full_like(p, -c)))
    lab.run("test_clip_weights_", clip_weights_=with_copy)
    lab.run("test_clip_weights__errors", clip_weights_=with_copy)


# --------------------------------------------------------------------------- exercise 6: penalty

def _gp(eps_shape="per_sample", at="interpolates", norm="per_sample", penalty="two_sided",
        reduce="mean", create_graph=True, detach=True, ignore_generator=False, check=True):
    def gradient_penalty(critic, real, fake, generator=None):
        if check and real.shape != fake.shape:
            raise ValueError("shapes differ")
        g = None if ignore_generator else generator
        where = real.device if g is None else g.device
        shape = {"per_sample": (len(real),) + (1,) * (real.dim() - 1),
                 "batch": (1,) * real.dim(), "pixel": tuple(real.shape)}[eps_shape]
        eps = torch.rand(shape, generator=g, device=where, dtype=real.dtype).to(real.device)
        r, f = (real.detach(), fake.detach()) if detach else (real, fake)
        x_hat = {"interpolates": eps * r + (1 - eps) * f, "real": r, "fake": f,
                 "half": 0.5 * r + 0.5 * f}[at]
        if not x_hat.requires_grad:
            x_hat = x_hat.requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=create_graph)
        norms = grad.flatten(1).norm(dim=1) if norm == "per_sample" else grad.norm().expand(len(real))
        if penalty == "two_sided":
            terms = (norms - 1) ** 2
        elif penalty == "one_sided":
            terms = (norms - 1).clamp(min=0) ** 2
        elif penalty == "squared_norm":
            terms = norms ** 2
        else:
            terms = (norms ** 2 - 1) ** 2
        if norm != "per_sample":
            terms = terms[:1]
        return terms.mean() if reduce == "mean" else terms.sum()
    return gradient_penalty


GP_MISTAKES = [
    ("one eps for the whole batch", dict(eps_shape="batch")),
    ("a random eps for every pixel", dict(eps_shape="pixel")),
    ("the gradient at the real images", dict(at="real")),
    ("the gradient at the fake images", dict(at="fake")),
    ("eps = 0.5 for every sample", dict(at="half")),
    ("one norm for the whole batch", dict(norm="batch")),
    ("a one-sided penalty", dict(penalty="one_sided")),
    ("the squared norm ||g||^2", dict(penalty="squared_norm")),
    ("(||g||^2 - 1)^2", dict(penalty="squared_minus_one")),
    ("the sum over the batch instead of the mean", dict(reduce="sum")),
    ("without create_graph=True", dict(create_graph=False)),
    ("seeded alike", dict(ignore_generator=True)),
    ("sends gradients into the generator", dict(detach=False)),
]


@pytest.mark.parametrize("phrase, flags", GP_MISTAKES, ids=[m[0] for m in GP_MISTAKES])
def test_gp_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_gradient_penalty", phrase, gradient_penalty=_gp(**flags))


def test_gp_helper_without_mistakes_passes(lab):
    lab.run("test_gradient_penalty", gradient_penalty=_gp())
    lab.run("test_gradient_penalty_errors", gradient_penalty=_gp())


def test_gp_without_shape_check_earns_the_math_points_only(lab):
    lab.run("test_gradient_penalty", gradient_penalty=_gp(check=False))
    lab.fails_with("test_gradient_penalty_errors", "expected ValueError",
                   gradient_penalty=_gp(check=False))


def test_gp_rejecting_only_shapes_that_do_not_broadcast_fails_the_errors_cell(lab):
    def gradient_penalty(critic, real, fake, generator=None):
        try:                                    # a fake batch of 1 broadcasts silently
            torch.broadcast_shapes(real.shape, fake.shape)
        except RuntimeError:
            raise ValueError("real and fake do not fit together") from None
        return _gp(check=False)(critic, real, fake, generator)
    lab.run("test_gradient_penalty", gradient_penalty=gradient_penalty)
    lab.fails_with("test_gradient_penalty_errors", "real (4, 1, 8, 8) and fake (1, 1, 8, 8)",
                   gradient_penalty=gradient_penalty)


def test_gp_alternative_with_grad_outputs_passes(lab):
    def gradient_penalty(critic, real, fake, generator=None):
        if tuple(real.shape) != tuple(fake.shape):
            raise ValueError("real and fake differ in shape")
        dev = generator.device if generator is not None else real.device
        eps = torch.rand(real.size(0), generator=generator, device=dev, dtype=real.dtype)
        eps = eps.to(real.device).view(-1, *([1] * (real.dim() - 1)))
        mixed = torch.lerp(fake.detach(), real.detach(), eps)   # fake + eps (real - fake)
        mixed.requires_grad_()
        scores = critic(mixed)
        grads = torch.autograd.grad(outputs=scores, inputs=mixed,
                                    grad_outputs=torch.ones_like(scores),
                                    create_graph=True, retain_graph=True)[0]
        grads = grads.reshape(grads.size(0), -1)
        return ((grads.pow(2).sum(dim=1).sqrt() - 1) ** 2).mean()
    lab.run("test_gradient_penalty", gradient_penalty=gradient_penalty)
    lab.run("test_gradient_penalty_errors", gradient_penalty=gradient_penalty)


# --------------------------------------------------------------------------- exercise 7: step

def _step(detach=True, zero_c="each", zero_c_end=True, zero_g=True, clip_after=True, do_clip=True,
          g_sign=-1, n_steps=None, same_real=False, z_once=False, reuse_z=False, gp=True,
          gp_weighted=True, report="mean", report_gp_weighted=False, w_sign=-1, as_tensor=False,
          g_detached=False, step_g_in_loop=False):
    def wgan_train_step(G, critic, opt_g, opt_c, real_batches, z_fn, n_critic=5, clip=None,
                        gp_weight=None):
        losses, penalties, totals = [], [], []
        steps = n_critic if n_steps is None else n_steps
        if zero_c == "once":
            opt_c.zero_grad()
        z = z_fn(len(real_batches[0])) if z_once else None
        for k in range(steps):
            real = real_batches[0] if same_real else real_batches[k]
            zk = z if z_once else z_fn(len(real))
            fake = G(zk).detach() if detach else G(zk)
            if zero_c == "each":
                opt_c.zero_grad()
            if clip is not None and do_clip and not clip_after:
                wgan.clip_weights_(critic, clip)
            loss = wgan.critic_loss(critic(real), critic(fake))
            total = loss
            if gp_weight and gp:
                penalty = wgan.gradient_penalty(critic, real, fake)
                total = loss + (gp_weight if gp_weighted else 1.0) * penalty
                penalties.append(penalty.item())
            total.backward()
            opt_c.step()
            if step_g_in_loop:
                opt_g.step()
            if clip is not None and do_clip and clip_after:
                wgan.clip_weights_(critic, clip)
            losses.append(loss.item())
            totals.append(total.item())
        if zero_g:
            opt_g.zero_grad()
        z = zk if reuse_z else z_fn(len(real_batches[0]))
        fake = G(z)
        g_loss = g_sign * critic(fake.detach() if g_detached else fake).mean()
        g_loss.backward()
        opt_g.step()
        if zero_c_end:
            opt_c.zero_grad()
        values = {"mean": losses, "last": losses[-1:], "with_gp": totals}[report]
        c = sum(values) / len(values)
        gp_value = sum(penalties) / len(penalties) if penalties else 0.0
        out = {"critic_loss": c, "wasserstein": w_sign * c,
               "gp": gp_value * (gp_weight or 1.0) if report_gp_weighted else gp_value,
               "generator_loss": g_loss.item()}
        if as_tensor:
            out = {k: torch.tensor(v) for k, v in out.items()}
        return out

    return wgan_train_step


STEP_MISTAKES = [
    ("fakes that are not detached", dict(detach=False)),
    ("no opt_c.zero_grad() before each critic backward", dict(zero_c="never")),
    ("opt_c.zero_grad() only once, before the loop", dict(zero_c="once")),
    ("still holds a gradient after the step", dict(zero_c_end=False)),
    ("no opt_g.zero_grad() before the generator's backward", dict(zero_g=False)),
    ("clipping before opt_c.step() instead of after it", dict(clip_after=False)),
    ("no clipping", dict(do_clip=False)),
    ("the generator loss with the wrong sign", dict(g_sign=1)),
    ("only one critic step", dict(n_steps=1)),
    ("the same real batch for every critic step", dict(same_real=True)),
    ("one z for all critic steps", dict(z_once=True)),
    ("reusing the last critic step's codes", dict(reuse_z=True)),
    ("the gradient penalty is not added", dict(gp=False)),
    ("the gradient penalty added without its weight", dict(gp_weighted=False)),
    ("the last critic step's loss instead of the mean", dict(report="last")),
    ("critic_loss including the penalty", dict(report="with_gp")),
    ("gp multiplied by gp_weight", dict(report_gp_weighted=True)),
    ("wasserstein = critic_loss", dict(w_sign=1)),
    ("not a Python float", dict(as_tensor=True)),
    ("the generator step through detached fakes", dict(g_detached=True)),
    ("calling opt_g.step() inside the critic loop", dict(step_g_in_loop=True)),
]


@pytest.mark.parametrize("phrase, flags", STEP_MISTAKES, ids=[m[0] for m in STEP_MISTAKES])
def test_step_mistakes_are_named(lab, phrase, flags):
    lab.fails_with("test_wgan_train_step", phrase, wgan_train_step=_step(**flags))


def test_step_helper_without_mistakes_passes(lab):
    lab.run("test_wgan_train_step", wgan_train_step=_step())


def test_step_alternative_with_requires_grad_switching_passes(lab):
    def wgan_train_step(G, critic, opt_g, opt_c, real_batches, z_fn, n_critic=5, clip=None,
                        gp_weight=None):
        c_losses, gps = [], []
        for i in range(n_critic):
            real = real_batches[i]
            fake = G(z_fn(real.shape[0])).detach()
            critic.zero_grad(set_to_none=True)
            real_scores, fake_scores = critic(real), critic(fake)
            loss = fake_scores.mean() - real_scores.mean()
            objective = loss
            if gp_weight is not None:
                gp = wgan.gradient_penalty(critic, real, fake)
                objective = objective + gp_weight * gp
                gps.append(gp.item())
            objective.backward()
            opt_c.step()
            if clip:
                with torch.no_grad():
                    for p in critic.parameters():
                        p.clamp_(-clip, clip)
            c_losses.append(loss.item())
        for p in critic.parameters():           # freeze the critic for the generator step
            p.requires_grad_(False)
        G.zero_grad(set_to_none=True)
        g_loss = -critic(G(z_fn(real_batches[0].shape[0]))).mean()
        g_loss.backward()
        opt_g.step()
        for p in critic.parameters():
            p.requires_grad_(True)
        critic.zero_grad()                      # the last critic step's gradients
        mean = float(torch.tensor(c_losses, dtype=torch.float64).mean())
        return {"critic_loss": mean, "wasserstein": -mean,
                "gp": float(torch.tensor(gps, dtype=torch.float64).mean()) if gps else 0.0,
                "generator_loss": g_loss.item()}
    lab.run("test_wgan_train_step", wgan_train_step=wgan_train_step)
