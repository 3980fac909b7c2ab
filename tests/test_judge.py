"""The judge (genlab.course.judge) against a real kernel: a test that runs in this process and
calls the student's functions across the process boundary behaves as if both were one process
(random state, generators, in-place changes, gradients, exceptions, forbidden routines), and
nothing the kernel does reaches the verdict except what its functions return."""
from __future__ import annotations

import textwrap
import time

import pytest
import torch
import torch.nn.functional as F
from jupyter_client.manager import start_new_kernel

from genlab import testing
from genlab.course.judge import Judge, JudgeStopped, Remote, StudentError


@pytest.fixture(scope="module")
def kernel():
    km, kc = start_new_kernel(kernel_name="python3")
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


@pytest.fixture
def judge(kernel):
    km, _ = kernel
    client = km.blocking_client()
    client.start_channels()
    j = Judge(client, km.interrupt_kernel, ["f", "g", "h"])
    j.deadline = time.monotonic() + 60
    yield j
    j.close()
    client.stop_channels()


def student(kernel, code: str) -> None:
    """Run ``code`` in the kernel, as the student's cell would."""
    _, kc = kernel
    reply = kc.execute_interactive(textwrap.dedent(code), timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]


def judged(judge, code: str) -> list:
    """Run a test cell in the judge; its error outputs ([] when it passed)."""
    return judge.run(textwrap.dedent(code), "test", 60)


def test_plain_results_come_back_as_plain_data(kernel, judge):
    student(kernel, """
        import torch
        def f(x, k=2):
            return {"y": x * k, "n": int(x.numel()), "shape": x.shape, "pair": (1.5, "a")}
        """)
    out = judge.namespace["f"](torch.arange(4.0), k=3)
    assert type(out["y"]) is torch.Tensor
    torch.testing.assert_close(out["y"], torch.arange(4.0) * 3)
    assert out["n"] == 4 and out["shape"] == torch.Size([4]) and out["pair"] == (1.5, "a")


def test_exceptions_keep_their_type_and_message(kernel, judge):
    student(kernel, """
        class Oops(Exception):
            pass
        def f(x):
            raise ValueError("x must be 4-D")
        def g():
            raise NotImplementedError()
        def h():
            raise Oops("mine")
        """)
    with pytest.raises(ValueError, match="x must be 4-D"):
        judge.namespace["f"](1)
    with pytest.raises(NotImplementedError):
        judge.namespace["g"]()
    with pytest.raises(StudentError, match="mine") as info:
        judge.namespace["h"]()
    assert type(info.value).__name__ == "Oops"


def test_random_state_and_generators_travel_both_ways(kernel, judge):
    student(kernel, """
        import torch
        def f(n, generator=None):
            return torch.randn(n, generator=generator)
        """)
    torch.manual_seed(5)
    first, second = judge.namespace["f"](3), torch.randn(3)
    torch.manual_seed(5)
    torch.testing.assert_close(first, torch.randn(3))     # the kernel drew from our state
    torch.testing.assert_close(second, torch.randn(3))    # ... and advanced it as we would
    g = torch.Generator().manual_seed(1)
    a = judge.namespace["f"](2, generator=g)
    b = judge.namespace["f"](2, generator=g)
    g2 = torch.Generator().manual_seed(1)
    torch.testing.assert_close(torch.cat([a, b]), torch.cat([torch.randn(2, generator=g2),
                                                             torch.randn(2, generator=g2)]))


def test_in_place_changes_and_module_updates_come_back(kernel, judge):
    student(kernel, """
        import torch
        def f(x):
            x.add_(1)
        def g(model, optimizer, x):
            optimizer.zero_grad()
            loss = model(x).pow(2).sum()
            loss.backward()
            optimizer.step()
            return loss.item()
        """)
    x = torch.zeros(3)
    judge.namespace["f"](x)
    torch.testing.assert_close(x, torch.ones(3))
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    twin = torch.nn.Linear(3, 1)
    twin.load_state_dict(model.state_dict())
    data = torch.randn(5, 3)
    loss = judge.namespace["g"](model, optimizer, data)
    expected = twin(data).pow(2).sum()
    expected.backward()
    with torch.no_grad():
        for p in twin.parameters():
            p -= 0.1 * p.grad
    assert loss == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(model.weight, twin.weight)       # the test's own module moved
    torch.testing.assert_close(model.weight.grad, twin.weight.grad)


def test_gradients_flow_back_through_the_kernel(kernel, judge):
    student(kernel, """
        import torch
        def f(mu, logvar, eps):
            return mu + torch.exp(0.5 * logvar) * eps
        def g(mu, logvar, eps):
            return (mu + torch.exp(0.5 * logvar) * eps).detach()
        """)
    mu = torch.randn(4, requires_grad=True)
    logvar = torch.randn(4, requires_grad=True)
    eps = torch.randn(4)
    judge.namespace["f"](mu, logvar, eps).pow(2).sum().backward()
    mu2, logvar2 = mu.detach().clone().requires_grad_(), logvar.detach().clone().requires_grad_()
    (mu2 + torch.exp(0.5 * logvar2) * eps).pow(2).sum().backward()
    torch.testing.assert_close(mu.grad, mu2.grad)
    torch.testing.assert_close(logvar.grad, logvar2.grad)
    assert not judge.namespace["g"](mu, logvar, eps).requires_grad  # a cut graph stays cut


STUDENT_NET = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Act(nn.LeakyReLU):            # a student's own subclass of a torch.nn class
        pass

    class f(nn.Module):
        def __init__(self, n=4):
            super().__init__()
            self.conv = nn.Conv2d(1, n, 3, stride=2)
            self.act = Act(0.1)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(n * 9, 1))

        def forward(self, x):
            return self.head(F.leaky_relu(self.conv(x), negative_slope=0.2)).view(-1)
    """


def test_a_module_in_the_kernel_answers_like_a_module(kernel, judge):
    """The student's nn.Module stays in the kernel; the test sees its class, submodules,
    parameters and gradients, as in one process."""
    from torch import nn
    student(kernel, STUDENT_NET)
    local = {}
    exec(textwrap.dedent(STUDENT_NET), local)   # the same network here, for the expected values
    torch.manual_seed(0)
    m = judge.namespace["f"](4)
    assert isinstance(m, nn.Module) and not isinstance(m, nn.Conv2d)
    kinds = {name: type_ for name, type_ in [(n, s.__class__) for n, s in m.named_modules()]}
    assert kinds["conv"] is nn.Conv2d and kinds["act"] is nn.LeakyReLU
    assert kinds["head"] is nn.Sequential and kinds["head.1"] is nn.Linear
    conv = next(s for s in m.modules() if isinstance(s, nn.Conv2d))
    assert tuple(conv.stride) == (2, 2) and conv.out_channels == 4
    assert [c.__class__ for c in m.children()] == [nn.Conv2d, nn.LeakyReLU, nn.Sequential]

    mine = local["f"](4)
    params = dict(m.named_parameters())
    assert list(params) == [n for n, _ in mine.named_parameters()]
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in mine.parameters())
    mine.load_state_dict(params)
    x = torch.randn(3, 1, 7, 7)
    assert m.eval() is not None and isinstance(m.train(), nn.Module)   # calls that return self
    with testing.CallLog() as log:
        out = m(x)
    torch.testing.assert_close(out, mine(x))
    assert "conv2d" in log.names() and ("leaky_relu", {"negative_slope": 0.2, "inplace": False}) \
        in log.calls

    out.square().sum().backward()   # no input requires grad: the parameters there still get theirs
    mine(x).square().sum().backward()
    for (name, p), q in zip(m.named_parameters(), mine.parameters()):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad)
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_a_model_in_the_kernel_trains_with_an_optimizer_there(kernel, judge):
    """optimizer_for(model) on the student's module makes the optimizer in the kernel: the
    test's loss, its backward into the kernel's weights and the step act as in one process."""
    student(kernel, STUDENT_NET)
    torch.manual_seed(0)
    m = judge.namespace["f"](4)
    x = torch.randn(5, 1, 7, 7)
    opt = testing.optimizer_for(m, "SGD", lr=0.1)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt.zero_grad()
    m(x).square().mean().backward()
    grads = {n: p.grad for n, p in m.named_parameters()}
    opt.step()
    for name, p in m.named_parameters():
        assert grads[name] is not None, name
        torch.testing.assert_close(p, before[name] - 0.1 * grads[name])
    with pytest.raises(ValueError, match="no optimizer"):
        testing.optimizer_for(m, "system")
    local = torch.nn.Linear(2, 2)          # in one process: the same call, the same errors
    assert isinstance(testing.optimizer_for(local, "SGD", lr=0.1), torch.optim.SGD)
    with pytest.raises(ValueError, match="no optimizer"):
        testing.optimizer_for(local, "system")


def test_spies_record_the_calls_made_in_the_kernel(kernel, judge):
    """A Spy put in the notebook's namespace, or passed as an argument, runs in the kernel in
    place of the student's function; its records come back."""
    student(kernel, """
        def g(x):
            return x - 100
        def f(x):
            return g(x) * 2
        def h(fn):
            return fn(3) + fn(4)
        """)
    assert judged(judge, """
        import torch
        from genlab.testing import Spy, notebook_globals
        spy = Spy(lambda x: x + 1)
        namespace = notebook_globals()
        real, namespace["g"] = namespace["g"], spy
        try:
            out = f(torch.arange(3.0))
        finally:
            namespace["g"] = real
        torch.testing.assert_close(out, (torch.arange(3.0) + 1) * 2)
        assert len(spy.calls) == 1
        torch.testing.assert_close(spy.calls[0][0], torch.arange(3.0))
        torch.testing.assert_close(f(torch.zeros(1)), torch.full((1,), -200.0))  # g is back
        counting = Spy(lambda n: 10 * n)
        assert h(counting) == 70 and counting.calls == [(3,), (4,)]
        """) == []


def test_the_tests_modules_get_gradients_through_the_kernel(kernel, judge):
    """A test's own module passed to the student's function (a critic): the result's gradient
    with respect to its weights, through a double backward in the kernel, matches one process;
    gradients the module held before the call reach the kernel."""
    from torch import nn
    student(kernel, """
        import torch
        def f(critic, x):
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
            return (g.flatten(1).norm(dim=1) - 1).pow(2).mean()
        def g(model):
            return [None if p.grad is None else float(p.grad.sum()) for p in model.parameters()]
        """)
    local = {}
    exec(textwrap.dedent("""
        import torch
        def f(critic, x):
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
            return (g.flatten(1).norm(dim=1) - 1).pow(2).mean()
        """), local)
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(6, 4)
    got = judge.namespace["f"](critic, x)
    assert got.requires_grad
    mine = torch.autograd.grad(got, list(critic.parameters()), allow_unused=True)
    want = torch.autograd.grad(local["f"](critic, x), list(critic.parameters()), allow_unused=True)
    for a, b in zip(mine, want):
        assert (a is None) == (b is None)
        if b is not None:
            torch.testing.assert_close(a, b)
    for p in critic.parameters():
        p.grad = torch.full_like(p, 0.5)
    assert judge.namespace["g"](critic) == [0.5 * p.numel() for p in critic.parameters()]


def test_only_torch_nn_classes_are_taken_from_the_kernel():
    """The class a kernel reports for a module is looked up in torch.nn only."""
    from torch import nn

    from genlab.course.judge import _resolve_torch_class
    assert _resolve_torch_class("torch.nn.modules.conv.Conv2d") is nn.Conv2d
    for path in ("builtins.object", "os.system", "torch.nn.functional.relu",
                 "torch.nn.modules.conv.F", None, 3, "torch.nn.modules.nothing.Here"):
        assert _resolve_torch_class(path) is None, path


def test_a_tensor_subclass_stays_in_the_kernel(kernel, judge):
    student(kernel, """
        import torch
        class Yes(torch.Tensor):
            def __eq__(self, other):
                return True
        def f():
            return torch.zeros(2).as_subclass(Yes)
        """)
    out = judge.namespace["f"]()
    assert isinstance(out, Remote) and not isinstance(out, torch.Tensor)
    errors = judged(judge, """
        from genlab.testing import check_tensor
        check_tensor(f(), "f()")
        """)
    assert errors and "expected a torch.Tensor, got Remote" in errors[0]["evalue"]


def test_nothing_in_the_kernel_changes_the_verdict(kernel, judge):
    """Hooks, transformers and rebound checks in the kernel: a wrong answer still fails."""
    student(kernel, """
        import torch, math, genlab.testing as t
        get_ipython().input_transformers_post.append(
            lambda lines: ["pass\\n"] if any("check" in line for line in lines) else lines)
        t.check_close = lambda *a, **k: None
        torch.testing.assert_close = lambda *a, **k: None
        def f(x):
            return x + 1
        """)
    errors = judged(judge, """
        import torch
        from genlab.testing import check_close
        check_close(f(torch.zeros(3)), torch.zeros(3), "f(zeros)")
        """)
    assert errors and errors[0]["ename"] == "CheckFailed"
    assert judged(judge, """
        import torch
        from genlab.testing import check_close
        check_close(f(torch.zeros(3)), torch.ones(3), "f(zeros)")
        """) == []
    # A transformer that empties every cell, the judge's calls included: the calls fail.
    student(kernel, "get_ipython().input_transformers_post.append(lambda lines: lines if "
                    "any('clear()' in line for line in lines) else ['pass\\n'])")
    errors = judged(judge, "f(1)")
    assert errors and "did not run genlab's remote module" in errors[0]["evalue"]
    student(kernel, "get_ipython().input_transformers_post.clear()")


def test_forbidden_routines_are_forbidden_in_the_kernel(kernel, judge):
    student(kernel, """
        import torch.nn.functional as F
        def f(x, w):
            return F.conv_transpose2d(x, w)
        """)
    x, w = torch.randn(1, 1, 3, 3), torch.randn(1, 1, 2, 2)
    with testing.forbid_calls(what="f(x, w)"):
        with pytest.raises(testing.CheckFailed, match="conv_transpose2d"):
            judge.namespace["f"](x, w)
    torch.testing.assert_close(judge.namespace["f"](x, w), F.conv_transpose2d(x, w))


def test_a_hanging_function_stops_the_notebook_not_the_grader(kernel, judge):
    student(kernel, """
        import time
        def f():
            time.sleep(60)
        """)
    judge.deadline = time.monotonic() + 2
    start = time.monotonic()
    with pytest.raises(JudgeStopped) as info:
        judge.namespace["f"]()
    assert info.value.ename == "CellTimeoutError" and time.monotonic() - start < 10


def test_the_wire_format_round_trips_and_rejects_damage():
    """What crosses the socket comes back with the same types, dtypes, shapes and values; bytes
    that were not written by dumps (cut short, altered) give ValueError and never anything
    else; what the format does not carry is refused when sent."""
    import random
    from genlab.course.remote import dumps, loads

    message = {"op": "call", "rng": torch.get_rng_state(), "none": None, "flags": [True, False],
               "numbers": (0, -2**70, 1.5, float("-inf")), "text": "é ß", "raw": b"\x00\xff",
               "nested": {"a": [(1,), {"b": torch.tensor(3.0, dtype=torch.bfloat16)}]},
               "tensors": [torch.zeros(0, 3), torch.tensor([True, False]),
                           torch.randn(3, 2, dtype=torch.float64).t(),
                           torch.randn(2, dtype=torch.complex64), torch.arange(6).reshape(2, 3)]}

    def same(a, b):
        if isinstance(a, torch.Tensor):
            return type(b) is torch.Tensor and a.dtype == b.dtype and a.shape == b.shape \
                and torch.equal(a, b)
        if isinstance(a, dict):
            return type(b) is dict and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, (list, tuple)):
            return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
        return type(a) is type(b) and a == b

    data = dumps(message)
    assert same(message, loads(data))
    rng = random.Random(0)
    for i in range(2000):
        damaged = bytearray(data[:rng.randrange(len(data))] if i % 2 else data)
        if i % 2 == 0:
            for _ in range(3):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            loads(bytes(damaged))
        except ValueError:
            pass
    with pytest.raises(ValueError, match="nested too deeply"):
        deep = []
        for _ in range(100):
            deep = [deep]
        dumps(deep)
    for value in (object(), {1, 2}, 1j, torch.ones(2, dtype=torch.uint16)):
        with pytest.raises(TypeError):
            dumps(value)
