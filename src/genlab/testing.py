"""Checks for the autograder tests: explicit, fair, and helpful when they fail.

Every check raises :class:`CheckFailed` (an ``AssertionError``) whose message says what was
checked and, when the wrong answer matches a known mistake, names that mistake. Messages never
print the expected values, so hidden tests stay hidden in feedback.

Nothing here trusts an object's own ``__eq__``: tensors are checked for type, shape, dtype and
device, and numbers are compared with :func:`torch.testing.assert_close`.
"""
from __future__ import annotations

import contextlib
import math
import sys
from typing import Callable, Iterable, Mapping

import torch


class CheckFailed(AssertionError):
    """A test failed; the message is meant for the student."""

    def _render_traceback_(self) -> list[str]:
        """IPython shows a failed check as its message (what failed, then the hint), not as a
        traceback through the test's code."""
        first, *rest = str(self).splitlines() or [""]
        return [f"{type(self).__name__}: {first}", *rest]


def _fail(what: str, problem: str, hint: str | None = None) -> None:
    message = f"{what}: {problem}"
    if hint:
        message += f"\n  Hint: {hint}"
    raise CheckFailed(message)


def check_tensor(value, what: str, *, shape=None, dtype=None, device=None,
                 floating: bool | None = None) -> torch.Tensor:
    """Check that ``value`` is a tensor with the given shape/dtype/device; return it."""
    if not isinstance(value, torch.Tensor) or type(value) not in (torch.Tensor, torch.nn.Parameter):
        _fail(what, f"expected a torch.Tensor, got {type(value).__name__}",
              "return a tensor (not a list, NumPy array or a tensor subclass)")
    if shape is not None and tuple(value.shape) != tuple(shape):
        _fail(what, f"expected shape {tuple(shape)}, got {tuple(value.shape)}")
    if dtype is not None and value.dtype != dtype:
        _fail(what, f"expected dtype {dtype}, got {value.dtype}")
    if floating is True and not value.is_floating_point():
        _fail(what, f"expected a floating-point tensor, got {value.dtype}")
    if device is not None and value.device.type != torch.device(device).type:
        _fail(what, f"expected a tensor on {torch.device(device).type}, got {value.device.type}",
              "create new tensors on the input's device (device=x.device)")
    return value


def check_close(actual, expected: torch.Tensor, what: str, *,
                mistakes: Mapping[str, torch.Tensor | Callable] | None = None,
                hint: str | None = None, atol: float | None = None, rtol: float | None = None,
                check_dtype: bool = False) -> None:
    """Check ``actual`` against ``expected`` (shape first, then values).

    ``mistakes`` maps a description of a typical mistake to what that mistake produces (a
    tensor), or to a predicate on ``actual``; when ``actual`` is wrong and matches one, the
    message names it. ``hint`` is shown when no mistake matches.
    """
    expected = torch.as_tensor(expected)
    actual = check_tensor(actual, what, dtype=expected.dtype if check_dtype else None)
    if actual.device != expected.device:
        actual_cmp = actual.detach().to(expected.device)
    else:
        actual_cmp = actual.detach()
    mistake = _matching_mistake(actual_cmp, mistakes, atol, rtol)
    if tuple(actual.shape) != tuple(expected.shape):
        _fail(what, f"expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}",
              mistake or hint)
    if actual_cmp.dtype != expected.dtype:
        actual_cmp = actual_cmp.to(expected.dtype) if expected.is_floating_point() else actual_cmp
    try:
        torch.testing.assert_close(actual_cmp, expected, atol=atol, rtol=rtol, equal_nan=False,
                                   check_dtype=False)
    except AssertionError:
        diff = (actual_cmp.double() - expected.double()).abs()
        finite = torch.isfinite(actual_cmp).all().item()
        bad = int((diff > (atol or 1e-5) + (rtol or 1.3e-6) * expected.double().abs()).sum())
        detail = (f"values differ from the reference in {bad} of {expected.numel()} elements "
                  f"(largest difference {diff.max().item():.3g})" if finite else
                  "the result contains NaN or inf")
        _fail(what, detail, mistake or hint)


def _matching_mistake(actual, mistakes, atol, rtol) -> str | None:
    for description, produced in (mistakes or {}).items():
        if callable(produced):
            try:
                if produced(actual):
                    return f"this looks like {description}"
            except Exception:
                continue
            continue
        produced = torch.as_tensor(produced).to(actual.device)
        if produced.shape != actual.shape:
            continue
        try:
            torch.testing.assert_close(actual.to(produced.dtype), produced, atol=atol, rtol=rtol,
                                       check_dtype=False)
        except (AssertionError, RuntimeError, TypeError):
            continue
        return f"this looks like {description}"
    return None


def check_number(actual, expected: float, what: str, *, rel: float = 1e-6, abs_: float = 1e-9,
                 integer: bool = False, mistakes: Mapping[str, float] | None = None,
                 hint: str | None = None) -> None:
    """Check a Python number (int/float, or a 0-d tensor when ``integer`` is False)."""
    if isinstance(actual, torch.Tensor) and actual.numel() == 1 and not integer:
        actual = actual.item()
    if isinstance(actual, bool) or not isinstance(actual, (int, float)) or \
            (integer and not isinstance(actual, int)):
        kind = "an int" if integer else "a number"
        _fail(what, f"expected {kind}, got {type(actual).__name__}")
    if math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_):
        return
    for description, value in (mistakes or {}).items():
        if math.isclose(actual, value, rel_tol=rel, abs_tol=abs_):
            _fail(what, "wrong value", f"this looks like {description}")
    _fail(what, f"wrong value (got {actual!r})", hint)


def attempt(what: str, fn: Callable, *args, hint: str | None = None, **kwargs):
    """Call ``fn(*args, **kwargs)`` inside a test; a stub (``NotImplementedError``) or a crash
    becomes a short :class:`CheckFailed` naming ``what`` (and ``hint`` for a crash) instead of
    a long traceback."""
    try:
        return fn(*args, **kwargs)
    except CheckFailed:
        raise
    except NotImplementedError:
        raise CheckFailed(f"{what}: not implemented yet (replace `raise NotImplementedError()` "
                          "with your code)") from None
    except Exception as err:
        message = f"{what}: raised {type(err).__name__}: {err}"
        raise CheckFailed(message + (f"\n  Hint: {hint}" if hint else "")) from None


def build_module(what: str, cls: Callable, *args, seed: int = 0, max_params: int = 5_000_000,
                 size_hint: str = "follow the suggested layer sizes", hint: str | None = None,
                 **kwargs) -> torch.nn.Module:
    """``cls(*args, **kwargs)`` built under ``torch.manual_seed(seed)`` for a test, through
    :func:`attempt` (``hint`` for a crash). It must be an ``nn.Module`` with at least one and at
    most ``max_params`` parameters; otherwise a short :class:`CheckFailed` says which."""
    torch.manual_seed(seed)
    model = attempt(what, cls, *args, hint=hint, **kwargs)
    if not isinstance(model, torch.nn.Module):
        raise CheckFailed(f"{what}: got a {type(model).__name__}, not an nn.Module\n  Hint: "
                          "subclass nn.Module and call super().__init__() first")
    n_params = sum(p.numel() for p in model.parameters())
    if n_params == 0:
        raise CheckFailed(f"{what} has no parameters\n  Hint: create the layers in __init__ and "
                          "store them as attributes (self.net = nn.Sequential(...))")
    if n_params > max_params:
        raise CheckFailed(f"{what} has {n_params:,} parameters, too many to train on a CPU in "
                          f"this lab\n  Hint: {size_hint}")
    return model


def check_raises(fn: Callable[[], object], exception: type[BaseException], what: str,
                 hint: str | None = None) -> None:
    """Check that ``fn()`` raises ``exception`` (a clear error for bad input)."""
    try:
        fn()
    except exception:
        return
    except Exception as err:  # a different error type
        _fail(what, f"expected {exception.__name__}, got {type(err).__name__}: {err}", hint)
    _fail(what, f"expected {exception.__name__}, but nothing was raised", hint)


# Convolution routines a from-scratch implementation must not call (by function name).
CONVOLUTION_ROUTINES = frozenset({
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "convolution", "_convolution", "conv_tbc", "cudnn_convolution",
    "cudnn_convolution_transpose", "mkldnn_convolution",
})


# The forbid_* blocks open now: a judged test (genlab.course.judge) applies them in the kernel too.
FORBIDDEN: list[tuple] = []


class _Forbid(torch.overrides.TorchFunctionMode):
    def __init__(self, names, what):
        super().__init__()
        self.names, self.what, self.called = names, what, None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.names:
            self.called = name
            _fail(self.what, f"it calls torch's {name}, which this exercise asks you not to use",
                  "build the result yourself (a scatter-add over input positions or kernel taps)")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def forbid_calls(names: Iterable[str] = CONVOLUTION_ROUTINES, what: str = "this function"):
    """Within the block, calling a torch function with one of these names raises CheckFailed.

    It works through ``torch.overrides.TorchFunctionMode``, so it also catches routines that
    were imported under another name before the block started.
    """
    rule = ("calls", sorted(names), what)
    FORBIDDEN.append(rule)
    try:
        with _Forbid(frozenset(names), what):
            yield
    finally:
        FORBIDDEN.remove(rule)


@contextlib.contextmanager
def forbid_distributions(what: str = "this function"):
    """Within the block, creating any ``torch.distributions`` object raises CheckFailed.

    The closed-form exercises (lab 05) ask for the formula itself; the lab uses
    torch.distributions only to check it.
    """
    from torch.distributions import Distribution
    original = Distribution.__init__

    def refuse(self, *args, **kwargs):
        _fail(what, f"it creates a torch.distributions.{type(self).__name__}, which this exercise "
                    "asks you not to use",
              "write the closed form with tensor operations; torch.distributions is what the lab "
              "checks it with")

    Distribution.__init__ = refuse
    rule = ("distributions", what)
    FORBIDDEN.append(rule)
    try:
        yield
    finally:
        FORBIDDEN.remove(rule)
        Distribution.__init__ = original


# The CallLog blocks open now: a judged test (genlab.course.judge) records in the kernel too.
CALL_LOGS: list["CallLog"] = []


class CallLog(torch.overrides.TorchFunctionMode):
    """``with CallLog() as log: ...`` records the name and keyword arguments of every torch
    function called inside the block (``log.calls``), whichever way it was called: ``F.relu``,
    ``torch.relu``, a tensor method or a module. In a judged test the calls the student's code
    makes in its kernel are recorded too (their keyword arguments as far as they are plain
    numbers, strings or None)."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, dict]] = []

    def __enter__(self):
        CALL_LOGS.append(self)
        return super().__enter__()

    def __exit__(self, *exc):
        CALL_LOGS.remove(self)
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append((getattr(func, "__name__", ""), dict(kwargs or {})))
        return func(*args, **(kwargs or {}))

    def names(self) -> set[str]:
        return {name for name, _ in self.calls}

    def plain_calls(self) -> list[tuple[str, dict]]:
        """The calls with only their plain keyword arguments (what can cross to the grader)."""
        plain = (type(None), bool, int, float, str)
        return [(name, {k: v for k, v in kwargs.items() if type(v) in plain})
                for name, kwargs in self.calls]


class Spy:
    """A stand-in that a test puts where the student's code will call it (in the notebook's
    namespace, or as an argument): it records each call's positional arguments in ``calls``
    (tensors as detached copies) and answers with ``answer(*args, **kwargs)``. In a judged test
    the spy runs in the student's kernel and ``calls`` comes back with the call's results.

    >>> spy = Spy(lambda mu, logvar: mu)
    >>> notebook_globals()["reparameterize"] = spy       # then call the student's forward
    """

    def __init__(self, answer: Callable):
        self.answer = answer
        self.calls: list[tuple] = []

    def __call__(self, *args, **kwargs):
        self.calls.append(tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a
                                for a in args))
        return self.answer(*args, **kwargs)


def optimizer_for(model: torch.nn.Module, name: str = "Adam", **options):
    """``torch.optim.<name>(model.parameters(), **options)`` for a test that trains the
    student's model. In a judged test the model lives in the student's kernel, and so does its
    optimizer (``zero_grad()`` and ``step()`` act there); the losses stay the test's."""
    in_kernel = getattr(type(model), "kernel_optimizer", None)
    if in_kernel is not None:
        return in_kernel(model, name, **options)
    return optimizer_class(name)(model.parameters(), **options)


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The optimizer class ``torch.optim.<name>``; a ValueError for any other name (in a
    judged test the name comes from the grader and is looked up in the kernel)."""
    cls = getattr(torch.optim, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"torch.optim has no optimizer {name!r}")
    return cls


_NOTEBOOKS: list[dict] = []  # the namespaces of the test cells running now (innermost last)


def run_test_cell(source: str, namespace: dict, name: str = "<test cell>") -> None:
    """Run a test cell's code in a scope of its own: a copy of the notebook's namespace. The
    test sees the student's functions, but the names it defines (its helpers, its data) never
    replace the student's: a student helper called ``_mi`` stays the student's ``_mi``."""
    _NOTEBOOKS.append(namespace)
    try:
        exec(compile(source, name, "exec"), dict(namespace))
    finally:
        _NOTEBOOKS.pop()


def notebook_globals() -> dict:
    """The notebook's own namespace, where the student's code looks names up, also from a test
    cell that runs in a scope of its own: for a test that watches the calls the student's code
    makes (it puts a spy there and restores the original afterwards)."""
    return _NOTEBOOKS[-1] if _NOTEBOOKS else sys._getframe(1).f_globals


class using_references:
    """While the block runs, the notebook's ``name=function`` pairs are the reference ones:
    the test of one exercise does not count again a mistake in another exercise it calls (the
    student's elbo_loss calling the student's kl_to_standard_normal). Restored afterwards.

    >>> with using_references(kl_to_standard_normal=reference_kl):
    ...     out = attempt(what, elbo_loss, logits, x, mu, logvar)
    """

    _MISSING = object()

    def __init__(self, **functions):
        self.functions = functions
        self.namespace = _NOTEBOOKS[-1] if _NOTEBOOKS else sys._getframe(1).f_globals

    def __enter__(self):
        self.saved = {name: self.namespace.get(name, self._MISSING) for name in self.functions}
        self.namespace.update(self.functions)
        return self

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            if value is self._MISSING:
                self.namespace.pop(name, None)
            else:
                self.namespace[name] = value
        return False


def devices() -> list[torch.device]:
    """CPU, plus CUDA when present: tests run on each to check "same device in, same device out"."""
    out = [torch.device("cpu")]
    if torch.cuda.is_available():
        out.append(torch.device("cuda"))
    return out


class LabHarness:
    """Runs a lab's graded cells in plain Python, for the repository's own tests.

    From a notebook source (``notebooks/<lab>.py``) it takes the locked set-up cells, the model
    solution of every exercise and the full test cells (visible and hidden). ``run(test_id,
    **replace)`` executes the set-up, the solutions, the ``replace`` overrides (e.g. a mistaken
    implementation) and then the test cell; ``fails_with`` checks that a test cell rejects an
    override with a message naming the mistake.
    """

    def __init__(self, source):
        from . import authoring
        cells = authoring.graded_cells(authoring.build_notebook(source))
        self.name = str(source)
        self.by_id = {c["grade_id"]: c for c in cells}
        self.setup = [c["source"] for c in cells if c.get("locked") and not c.get("grade")]
        self.solutions = {c["grade_id"]: authoring.solution_code(c["source"])
                          for c in cells if c.get("solution")}
        self.tests = {c["grade_id"]: authoring.test_source(c["source"])
                      for c in cells if c.get("grade")}
        self.points = {c["grade_id"]: c["points"] for c in cells if c.get("grade")}

    def namespace(self, **replace) -> dict:
        """Set-up cells and every model solution executed, then ``replace`` on top."""
        ns = {"__name__": "__lab__"}
        for source in self.setup:
            exec(compile(source, "<setup>", "exec"), ns)
        for name, source in self.solutions.items():
            exec(compile(source, f"<solution {name}>", "exec"), ns)
        ns.update(replace)
        return ns

    def run(self, test_id: str, namespace: dict | None = None, **replace) -> dict:
        """Execute one test cell in its own scope, as the grader does (raises what it raises);
        return the notebook's namespace."""
        ns = namespace if namespace is not None else self.namespace(**replace)
        run_test_cell(self.tests[test_id], ns, f"<{test_id}>")
        return ns

    def check_structure(self, exercises: Iterable[str], points: dict) -> None:
        """A locked set-up cell ``setup`` comes first; each exercise has a solution cell with
        solution markers, followed directly by its test cells (``test_<name>``, then any
        ``test_<name>_<suffix>``), each with hidden tests; the points per test cell are
        ``points``."""
        ids = list(self.by_id)
        assert ids and ids[0] == "setup", f"the first graded cell should be 'setup', got {ids[:1]}"
        for name in exercises:
            assert self.by_id.get(name, {}).get("solution"), f"{name}: no solution cell"
            assert "### BEGIN SOLUTION" in self.by_id[name]["source"], f"{name}: no solution markers"
            tests = [t for t in self.tests if t == f"test_{name}" or t.startswith(f"test_{name}_")]
            assert tests and tests[0] == f"test_{name}", f"{name}: no test cell test_{name}"
            for offset, test_id in enumerate(tests, start=1):
                assert ids.index(test_id) == ids.index(name) + offset, \
                    f"{test_id} must follow {name} directly"
                assert "### BEGIN HIDDEN TESTS" in self.by_id[test_id]["source"], \
                    f"{test_id}: no hidden tests"
        assert self.points == points, f"points {self.points} != {points}"

    def run_all(self) -> dict:
        """Every test cell, in order, in one namespace with the model solutions."""
        ns = self.namespace()
        for test_id in self.tests:
            self.run(test_id, namespace=ns)
        return ns

    def run_visible(self) -> None:
        """The visible part of each test cell, each in a fresh namespace: the tests a student
        sees must run without the hidden ones."""
        from .authoring import strip_hidden
        for test_id in self.tests:
            run_test_cell(strip_hidden(self.by_id[test_id]["source"]), self.namespace(),
                          f"<{test_id} visible>")

    def fails_with(self, test_id: str, phrase: str, **replace) -> str:
        """Assert the test cell fails on ``replace`` with ``phrase`` in its message; return it."""
        try:
            self.run(test_id, **replace)
        except AssertionError as err:
            message = str(err)
        else:
            raise AssertionError(f"{test_id} passed an implementation it should reject "
                                 f"(expected a failure naming {phrase!r})")
        if phrase not in message:
            raise AssertionError(f"{test_id} failed without naming {phrase!r}:\n{message}")
        return message


# ------------------------------------------------------------------------------------------
# Stand-ins for submissions, for the repository's tests of the test cells
# ------------------------------------------------------------------------------------------

def stub(*args, **kwargs):
    """What the released notebook holds before a student writes anything."""
    raise NotImplementedError()


class AlwaysEqual:
    """A cheat: an object that claims to equal everything."""

    def __eq__(self, other):
        return True

    def __float__(self):
        return 0.0

    def __int__(self):
        return 0


class EqualTensor(torch.Tensor):
    """A cheat: a tensor subclass whose ``==`` always says True."""

    def __eq__(self, other):
        return True
