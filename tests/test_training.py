"""genlab.training: the loop learns, reports, reproduces, stays quiet and rejects bad input."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab import training
from genlab.training import History, evaluate, fit


def mse(model, batch):
    x, y = batch
    return F.mse_loss(model(x), y)


def regression(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3 + 0.01 * torch.randn(n, 1, generator=g)
    return x, y


def conv_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),  # [2]: its weight shows the layout
                         nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1))


def recon(model, x):
    return F.mse_loss(model(x), x)


CPU = {"device": "cpu", "progress": False}


def test_linear_regression_learns_and_history_has_the_right_shape():
    data = regression(200)
    history = fit(nn.Linear(3, 1), data, mse, epochs=20, lr=0.05, batch_size=64, **CPU)
    assert isinstance(history, History)
    assert len(history.epoch_losses) == 20
    assert len(history.step_losses) == math.ceil(200 / 64) * 20
    assert history.epoch_losses[-1] < 0.01 * history.epoch_losses[0]
    assert history.seconds > 0 and history.images_per_second > 0 and history.device == "cpu"


def test_epoch_loss_is_the_size_weighted_mean_of_its_steps():
    history = fit(nn.Linear(3, 1), regression(100), mse, epochs=1, batch_size=64, **CPU)
    first, second = history.step_losses
    assert history.epoch_losses[0] == pytest.approx((64 * first + 36 * second) / 100)


def test_channels_last_gives_the_same_step():
    x = torch.rand(16, 1, 8, 8)
    plain = conv_net()
    fast = copy.deepcopy(plain)
    kw = dict(epochs=1, batch_size=16, shuffle=False, **CPU)
    a = fit(plain, x, recon, channels_last=False, **kw)
    b = fit(fast, x, recon, channels_last=True, **kw)
    assert fast[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert a.step_losses == pytest.approx(b.step_losses, rel=1e-5)
    for p, q in zip(plain.parameters(), fast.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_channels_last_is_the_default_for_conv_nets_on_cpu():
    model = conv_net()
    fit(model, torch.rand(8, 1, 8, 8), recon, epochs=1, **CPU)
    assert model[2].weight.is_contiguous(memory_format=torch.channels_last)


def test_same_seed_same_run_other_seed_other_order():
    data, model = regression(100), nn.Linear(3, 1)
    runs = [fit(copy.deepcopy(model), data, mse, epochs=2, batch_size=16, generator=seed,
                **CPU).step_losses for seed in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    same = fit(copy.deepcopy(model), data, mse, epochs=2, batch_size=16,
               generator=torch.Generator().manual_seed(7), **CPU).step_losses
    assert same == runs[0]


def test_progress_bar_shows_and_is_quiet_under_the_autograder(monkeypatch, capsys):
    data = regression(50)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    fit(nn.Linear(3, 1), data, mse, epochs=2, device="cpu", desc="training")
    assert "training" in capsys.readouterr().err
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    fit(nn.Linear(3, 1), data, mse, epochs=2, device="cpu", desc="training")
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    monkeypatch.delenv("NBGRADER_EXECUTION")
    fit(nn.Linear(3, 1), data, mse, epochs=2, **CPU)
    assert capsys.readouterr().err == ""


def test_metrics_and_evaluate():
    def loss_fn(model, batch):
        loss = mse(model, batch)
        return loss, {"double": 2 * loss}

    data = regression(130)
    model = nn.Linear(3, 1)
    history = fit(model, data, loss_fn, epochs=3, batch_size=32, **CPU)
    assert len(history.metrics["double"]) == 3
    assert history.metrics["double"][0] == pytest.approx(2 * history.epoch_losses[0], rel=1e-5)
    model.train()
    full = F.mse_loss(model(data[0]), data[1]).item()
    assert evaluate(model, data, mse, batch_size=50) == pytest.approx(full, rel=1e-5)  # 50+50+30
    result = evaluate(model, data, loss_fn, batch_size=50)
    assert result == pytest.approx({"loss": full, "double": 2 * full}, rel=1e-5)
    assert model.training
    model.eval()
    evaluate(model, data, mse)
    assert not model.training


def test_single_tensor_data_gives_tensor_batches():
    seen = []

    def loss_fn(model, batch):
        seen.append(type(batch))
        return recon(model, batch)

    fit(conv_net(), torch.rand(10, 1, 8, 8), loss_fn, epochs=1, batch_size=4, **CPU)
    assert seen == [torch.Tensor] * 3


def test_step_fn_replaces_the_default_step():
    calls = []

    def step_fn(model, batch, optimizer):
        calls.append(len(batch[0]))
        return torch.tensor(1.0)

    model = nn.Linear(3, 1)
    before = copy.deepcopy(model.state_dict())
    history = fit(model, regression(10), step_fn=step_fn, epochs=2, batch_size=4, **CPU)
    assert calls == [4, 4, 2] * 2 and history.epoch_losses == [1.0, 1.0]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_compile_failure_falls_back_with_a_notice(monkeypatch, capsys):
    class Broken(nn.Module):
        def forward(self, *args):
            raise RuntimeError("no C++ compiler\nmore detail")

    monkeypatch.setattr(torch, "compile", lambda model: Broken())
    history = fit(nn.Linear(3, 1), regression(64), mse, epochs=2, compile=True, **CPU)
    out = capsys.readouterr().out
    assert "torch.compile failed" in out and "no C++ compiler" in out
    assert len(out.strip().splitlines()) == 1
    assert len(history.step_losses) == 2


def test_default_adam_makes_the_same_update_as_plain_adam():
    model = nn.Linear(3, 1)
    twin = copy.deepcopy(model)
    fast, plain = training.adam(model, lr=0.1), torch.optim.Adam(twin.parameters(), lr=0.1)
    assert isinstance(fast, torch.optim.Adam) and fast.defaults["lr"] == 0.1
    x, y = regression(32)
    for m, opt in ((model, fast), (twin, plain)):
        for _ in range(3):
            opt.zero_grad()
            F.mse_loss(m(x), y).backward()
            opt.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q)


def test_diverging_loss_raises():
    with pytest.raises(FloatingPointError, match="learning rate"):
        fit(nn.Linear(3, 1), regression(20), lambda m, b: mse(m, b) * float("nan"), epochs=1,
            **CPU)


@pytest.mark.parametrize("data, kwargs, error, match", [
    (torch.empty(0, 3), {}, ValueError, "empty"),
    ((torch.rand(5, 3), torch.rand(4, 1)), {}, ValueError, "first dimension"),
    ([], {}, TypeError, "tensor"),
    ([1, 2, 3], {}, TypeError, "tensor"),
    (torch.tensor(1.0), {}, ValueError, "first"),
    (torch.rand(5, 3), {"epochs": 0}, ValueError, "epochs"),
    (torch.rand(5, 3), {"epochs": 1.5}, ValueError, "epochs"),
    (torch.rand(5, 3), {"batch_size": 0}, ValueError, "batch_size"),
    (torch.rand(5, 3), {"batch_size": -4}, ValueError, "batch_size"),
])
def test_bad_input_is_rejected_clearly(data, kwargs, error, match):
    kwargs = {"epochs": 1, **kwargs}
    with pytest.raises(error, match=match):
        fit(nn.Linear(3, 3), data, lambda m, b: m(b).sum(), **CPU, **kwargs)


@pytest.mark.parametrize("loss_fn", [
    lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(1),            # per-sample, not reduced
    lambda m, b: (mse(m, b), mse(m, b), mse(m, b)),          # elbo_loss's triple, not (loss, dict)
])
def test_loss_fn_must_return_a_scalar(loss_fn):
    with pytest.raises(TypeError, match="scalar loss"):
        fit(nn.Linear(3, 1), regression(8), loss_fn, epochs=1, **CPU)


def test_step_fn_may_return_a_float():
    history = fit(nn.Linear(3, 1), regression(8), step_fn=lambda m, b, o: 2.5, epochs=1, **CPU)
    assert history.epoch_losses == [2.5]


def test_needs_exactly_one_of_loss_fn_and_step_fn():
    with pytest.raises(ValueError, match="exactly one"):
        fit(nn.Linear(3, 1), regression(4), epochs=1, device="cpu")


def test_model_is_moved_unless_the_optimizer_already_has_state_elsewhere():
    model = nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters())
    fit(model, regression(8), mse, optimizer=optimizer, epochs=1, **CPU)  # Adam now has state
    with pytest.raises(ValueError, match="optimizer already holds state"):
        fit(model, regression(8), mse, optimizer=optimizer, epochs=1, device="meta", progress=False)
    assert model.weight.device.type == "cpu"


def test_default_device_is_genlabs_choice(monkeypatch):
    asked = []
    monkeypatch.setattr(training, "get_device", lambda: asked.append(1) or torch.device("cpu"))
    assert fit(nn.Linear(3, 1), regression(8), mse, epochs=1, progress=False).device == "cpu"
    assert asked == [1]


@pytest.mark.gpu
def test_trains_on_cuda_with_bf16_and_channels_last():
    model = conv_net()
    history = fit(model, torch.rand(32, 1, 8, 8), recon, epochs=2, device="cuda", progress=False)
    assert history.device.startswith("cuda") and next(model.parameters()).is_cuda
    assert model[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(math.isfinite(v) for v in history.step_losses)


# --------------------------------------------------------------------------- predict

def test_predict_matches_eval_mode_forward_in_batches_and_restores_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    x = torch.randn(23, 5)
    out = training.predict(model, x, batch_size=4)     # 6 batches, the last one of 3
    assert model.training                              # mode restored
    model.eval()
    with torch.no_grad():
        expected = model(x)                            # eval mode: no dropout, running BN stats
    torch.testing.assert_close(out, expected)
    assert not out.requires_grad


def test_predict_with_a_method_and_errors():
    model = nn.Linear(4, 2)
    x = torch.randn(7, 4)
    double = training.predict(model, x, lambda b: 2 * model(b), batch_size=3)
    torch.testing.assert_close(double, 2 * model(x).detach())
    with pytest.raises(ValueError, match="batch_size"):
        training.predict(model, x, batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        training.predict(model, x[:0])
