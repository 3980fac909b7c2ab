"""The student's side of a judged test: calls that the grader asks the kernel to make.

A judged test cell (:mod:`genlab.course.judge`) runs in the grader's own process. When it first
calls a student's function, the grader has the kernel run :func:`serve` (this module, inside
the sandboxed kernel), which connects to the grader over a Unix socket and, for each request,
makes the call and sends back what it returned, until the test cell is done.

Only plain data crosses the boundary, in both directions: numbers, strings, tensors, and
lists, tuples and dicts of them, written in a small binary format of this module's own
(:func:`dumps`, :func:`loads`) whose reader only ever builds those types: reading what a
kernel sent cannot run code (as ``pickle`` could). Anything else the student's code returns (a
module, a tensor subclass, an object with its own ``__eq__``) stays in the kernel; the grader
gets a handle that can only be called or asked for attributes, each answer again plain data.
The kernel never sees the test's code or its expected values, so nothing it does can change
the verdict except what its functions return.
"""
from __future__ import annotations

import builtins
import contextlib
import io
import math
import struct

import torch

MAX_MESSAGE = 4000            # characters of an exception message that travel back
_objects: dict[int, object] = {}   # handle -> object kept in the kernel
_graphs: dict[int, tuple] = {}     # call id -> (inputs, outputs) for a later backward pass


# ---------------------------------------------------------------------------- wire format
# Every value travels as a tagged tuple, so nothing a student returns can pose as a tag:
#   ("v", x) None/bool/int/float/str   ("t", tensor, device, requires_grad)   ("l", [...])
#   ("u", (...)) tuple   ("d", [(k, v), ...])   ("s", [ints]) torch.Size   ("dt", "float32")
#   ("dv", "cpu")   ("g", device, state) torch.Generator   ("np", tensor) NumPy array
#   ("h", reference, type name, torch.nn class or None) an object that stays in the kernel
#   (see _lookup); for an nn.Module the torch.nn class it is or derives from, so that the
#   grader's tests can ask isinstance(m, nn.Conv2d) of a handle (genlab.course.judge)

_PLAIN = (type(None), bool, int, float, str)


def encode(value, keep=None):
    """``value`` as tagged plain data; ``keep(obj) -> reference`` stands for what cannot travel
    (kernel side: the object is kept; grader side: a handle sent back)."""
    kind = type(value)
    if kind in _PLAIN:
        return ("v", value)
    if kind in (torch.Tensor, torch.nn.Parameter):
        data = torch.Tensor.detach(value).to("cpu", copy=True).contiguous()
        return ("t", torch.Tensor.as_subclass(data, torch.Tensor), str(value.device),
                bool(value.requires_grad))
    if kind is torch.Size:
        return ("s", [int(n) for n in value])
    if kind in (list, tuple):
        return ("l" if kind is list else "u", [encode(v, keep) for v in value])
    if kind is dict:
        return ("d", [(encode(k, keep), encode(v, keep)) for k, v in value.items()])
    if kind is torch.dtype:
        return ("dt", str(value).removeprefix("torch."))
    if kind is torch.device:
        return ("dv", str(value))
    if kind is torch.Generator:
        return ("g", str(value.device), value.get_state())
    if type(value).__module__ == "numpy" and hasattr(value, "dtype"):
        if getattr(value, "ndim", 0) == 0:
            return ("v", value.item())
        return ("np", torch.from_numpy(value.copy()))
    if keep is None:
        raise TypeError(f"a {kind.__name__} cannot be sent to the student's kernel")
    return ("h", keep(value), f"{kind.__module__}.{kind.__qualname__}", torch_class(value))


def torch_class(obj) -> str | None:
    """For an ``nn.Module``: the nearest class of ``torch.nn`` in its class's MRO, as
    ``module.qualname`` (a student's ``class Net(nn.Module)`` gives ``torch.nn...Module``)."""
    if not isinstance(obj, torch.nn.Module):
        return None
    for cls in type(obj).__mro__:
        if cls.__module__.startswith("torch.nn.modules.") and issubclass(cls, torch.nn.Module):
            return f"{cls.__module__}.{cls.__qualname__}"
    return None


def decode(tagged, handle=None):
    """The value of ``tagged``; ``handle(id, type name)`` makes what stands for a kept object."""
    tag = tagged[0]
    if tag == "v":
        return tagged[1]
    if tag == "t":
        _, data, device, requires_grad = tagged
        device = device if device == "cpu" or _device_present(device) else "cpu"
        out = data.to(device)
        return out.requires_grad_() if requires_grad and out.is_floating_point() else out
    if tag == "s":
        return torch.Size(tagged[1])
    if tag in ("l", "u"):
        items = [decode(v, handle) for v in tagged[1]]
        return items if tag == "l" else tuple(items)
    if tag == "d":
        return {decode(k, handle): decode(v, handle) for k, v in tagged[1]}
    if tag == "dt":
        return getattr(torch, tagged[1])
    if tag == "dv":
        return torch.device(tagged[1])
    if tag == "g":
        generator = torch.Generator(device=tagged[1] if _device_present(tagged[1]) else "cpu")
        return generator.set_state(tagged[2])
    if tag == "np":
        return tagged[1].numpy()
    if tag == "h" and handle is not None:
        return handle(tuple(tagged[1]), *tagged[2:])
    raise ValueError(f"unknown tag {tag!r}")


def _device_present(device: str) -> bool:
    return device.startswith("cuda") and torch.cuda.is_available()


# The bytes on the socket. Each value is a one-byte type code and its payload; lengths and
# integers are 8-byte little-endian. Tensors travel as dtype, shape and raw bytes. This is about
# 3 times faster than torch.save + torch.load(weights_only=True) for the small messages of a
# test, and just as safe: the reader builds only the types below, with bounded nesting.
_DTYPES = {str(t).removeprefix("torch."): t for t in (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex64,
    torch.complex128, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
    torch.bool)}
_MAX_DEPTH = 64


def dumps(value) -> bytes:
    """``value`` (None, bool, int, float, str, bytes, lists, tuples and dicts of them, and
    plain tensors) as bytes for :func:`loads`; ``TypeError`` for anything else."""
    out: list[bytes] = []
    _write(value, out, 0)
    return b"".join(out)


def _write(value, out: list, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("a message nested too deeply")
    kind = type(value)
    if value is None:
        out.append(b"N")
    elif kind is bool:
        out.append(b"T" if value else b"F")
    elif kind is int:
        text = str(value).encode()
        out += [b"i", len(text).to_bytes(8, "little"), text]
    elif kind is float:
        out += [b"f", struct.pack("<d", value)]
    elif kind in (str, bytes):
        data = value.encode() if kind is str else value
        out += [b"s" if kind is str else b"b", len(data).to_bytes(8, "little"), data]
    elif kind in (list, tuple):
        out += [b"l" if kind is list else b"u", len(value).to_bytes(8, "little")]
        for item in value:
            _write(item, out, depth + 1)
    elif kind is dict:
        out += [b"d", len(value).to_bytes(8, "little")]
        for key, item in value.items():
            _write(key, out, depth + 1)
            _write(item, out, depth + 1)
    elif kind is torch.Tensor:
        name = str(value.dtype).removeprefix("torch.")
        if name not in _DTYPES:
            raise TypeError(f"a tensor of dtype {value.dtype} cannot be sent")
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
        out.append(b"x")
        _write(name, out, depth + 1)
        _write(tuple(value.shape), out, depth + 1)
        out += [len(data).to_bytes(8, "little"), data]
    else:
        raise TypeError(f"a {kind.__name__} cannot be sent")


def loads(data: bytes):
    """The value :func:`dumps` wrote; ``ValueError`` for bytes it did not write."""
    view = memoryview(data)
    try:
        value, end = _read(view, 0, 0)
    except (IndexError, struct.error, UnicodeDecodeError, OverflowError) as err:
        raise ValueError(f"a damaged message ({err})") from None
    if end != len(view):
        raise ValueError("a damaged message (bytes after its end)")
    return value


def _length(view, at: int) -> tuple[int, int]:
    if at + 8 > len(view):
        raise ValueError("a damaged message (cut short)")
    return int.from_bytes(view[at:at + 8], "little"), at + 8


def _chunk(view, at: int) -> tuple[memoryview, int]:
    size, at = _length(view, at)
    if at + size > len(view):
        raise ValueError("a damaged message (cut short)")
    return view[at:at + size], at + size


def _read(view, at: int, depth: int):
    if depth > _MAX_DEPTH:
        raise ValueError("a message nested too deeply")
    code, at = bytes(view[at:at + 1]), at + 1
    if code == b"N":
        return None, at
    if code in (b"T", b"F"):
        return code == b"T", at
    if code == b"i":
        text, at = _chunk(view, at)
        if len(text) > 4400:   # Python's own limit on int digits
            raise ValueError("a damaged message (an integer too long)")
        return int(bytes(text)), at
    if code == b"f":
        return struct.unpack("<d", view[at:at + 8])[0], at + 8
    if code in (b"s", b"b"):
        data, at = _chunk(view, at)
        return (str(data, "utf-8") if code == b"s" else bytes(data)), at
    if code in (b"l", b"u", b"d"):
        count, at = _length(view, at)
        if count > len(view) - at:  # every item takes at least one byte
            raise ValueError("a damaged message (cut short)")
        items = []
        for _ in range(count * (2 if code == b"d" else 1)):
            item, at = _read(view, at, depth + 1)
            items.append(item)
        if code == b"d":
            try:
                return dict(zip(items[::2], items[1::2])), at
            except TypeError:
                raise ValueError("a damaged message (a key that cannot be a key)") from None
        return (items if code == b"l" else tuple(items)), at
    if code == b"x":
        return _read_tensor(view, at, depth)
    raise ValueError(f"a damaged message (unknown type {code!r})" if code else
                     "a damaged message (cut short)")


def _read_tensor(view, at: int, depth: int):
    name, at = _read(view, at, depth + 1)
    shape, at = _read(view, at, depth + 1)
    data, at = _chunk(view, at)
    dtype = _DTYPES.get(name) if type(name) is str else None
    if dtype is None or type(shape) is not tuple or \
            not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError("a damaged message (a tensor's dtype or shape)")
    numel = math.prod(shape)
    if numel * dtype.itemsize != len(data):
        raise ValueError("a damaged message (a tensor's size)")
    if numel == 0:
        return torch.empty(shape, dtype=dtype), at
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return raw.view(dtype).reshape(shape), at


# ----------------------------------------------------------------------------- kernel side
def serve(path: str, token: str) -> None:
    """Answer the grader's requests for one test cell, then return (the grader sends this call
    to the kernel as a cell of its own): connect to the grader's socket at ``path``, say
    ``token``, and answer each request until the grader says it is done."""
    import socket
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(path)
    try:
        send(connection, token.encode())
        while (data := receive(connection)) not in (None, b"done"):
            try:
                reply = ("ok", _answer(loads(data)))
            except KeyboardInterrupt:  # the grader gave up on this call (its time limit)
                raise
            except BaseException as err:  # noqa: BLE001 - what the student's code raised goes back
                reply = ("error", _describe(err))
            try:
                data = dumps(reply)
            except BaseException as err:  # noqa: BLE001
                data = dumps(("error", _describe(err)))
            send(connection, data)
    finally:
        connection.close()
        _graphs.clear()   # the test cell is over: its graphs can go


def send(connection, data: bytes) -> None:
    connection.sendall(len(data).to_bytes(8, "big") + data)


def receive(connection, limit: int = 2**31) -> bytes | None:
    """One message (None when the other side has gone); its length must not pass ``limit``."""
    head = _exactly(connection, 8)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > limit:
        raise ValueError(f"a message of {size} bytes, over the limit of {limit}")
    return _exactly(connection, size)


def _exactly(connection, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = connection.recv(min(left, 2**20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _describe(err: BaseException) -> list:
    from genlab.testing import CheckFailed
    kind = "check" if isinstance(err, CheckFailed) else "error"
    return [kind, type(err).__name__, str(err)[:MAX_MESSAGE]]


def _user_namespace() -> dict:
    from IPython import get_ipython
    shell = get_ipython()
    if shell is None:
        import __main__
        return vars(__main__)
    return shell.user_ns


def _keep(obj) -> tuple:
    _objects[id(obj)] = obj
    return ("obj", id(obj))


def _lookup(ref):
    """The object a reference names: ``("name", "psnr")`` a name in the notebook,
    ``("obj", id)`` a kept object, either followed by attribute names."""
    kind, key, *attributes = tuple(ref)
    if kind == "name":
        try:
            obj = _user_namespace()[key]
        except KeyError:
            raise NameError(f"name {key!r} is not defined") from None
    else:
        obj = _objects[key]
    for attribute in attributes:
        obj = getattr(obj, attribute)
    return obj


def _answer(request: dict):
    op = request["op"]
    if op == "vjp":
        # backward() as in one process: the gradients accumulate in the parameters of the
        # student's modules (a test then asks for them) and the inputs' go back to the grader.
        inputs, outputs = _graphs[request["call"]]
        grads = [decode(g) for g in request["grads"]]
        pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad and g is not None]
        wanted = [x for x in inputs if x.requires_grad]
        for x in wanted:
            x.grad = None
            x.retain_grad()
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs],
                                    retain_graph=True)
        return [encode(x.grad if x.requires_grad else None) for x in inputs]
    target = _lookup(request["target"])
    if op == "getattr":
        return encode(target, _keep)
    if op == "optimizer":  # an optimizer of torch.optim over a module's parameters, kept here
        from genlab.testing import optimizer_class
        cls = optimizer_class(request["name"])
        return encode(cls(target.parameters(), **decode(request["options"])), _keep)
    if op == "describe":
        return _describe_module(target, request["part"])
    if op != "call":
        raise ValueError(f"unknown request {op!r}")
    if request.get("rng") is not None:
        torch.set_rng_state(request["rng"])
    if request.get("pickled") is not None:  # objects of the test's: modules, optimizers, ...
        import pickle
        args, kwargs, grads = pickle.loads(request["pickled"])
        for index, attributes in request.get("attributes", []):  # optimizers pickle only state
            for name, value in attributes.items():
                setattr([*args, *kwargs.values()][index], name, value)
        for module, found in zip([*args, *kwargs.values()], grads):
            for name, param in (module.named_parameters() if found else ()):
                param.grad = found.get(name)
    else:
        args = decode(request["args"], lambda ref, *_: _lookup(ref))
        kwargs = decode(request["kwargs"], lambda ref, *_: _lookup(ref))
    arguments = [*args, *kwargs.values()]
    tensors = [x for x in arguments if isinstance(x, torch.Tensor)]
    before = [x.detach().clone() for x in tensors]
    generators = [x for x in arguments if isinstance(x, torch.Generator)]
    with _context(request) as (log, references):
        result = target(*args, **kwargs)
    changed = [i for i, (x, b) in enumerate(zip(tensors, before))
               if x.shape != b.shape or not torch.equal(x.detach(), b)]
    leaves = _tensors_in(result)
    if request.get("graph") and any(t.requires_grad for t in leaves):
        # the same inputs, in the same order, as the grader links: tensors, then module weights
        params = [p for i in request.get("modules", []) for p in arguments[i].parameters()]
        _graphs[request["call"]] = (tensors + params, leaves)
    from genlab.testing import Spy
    return {"result": encode(result, _keep),
            "changed": [(i, encode(tensors[i])) for i in changed],
            "generators": [g.get_state() for g in generators],
            "objects": [(i, _state_of(x)) for i, x in enumerate(arguments) if _has_state(x)],
            "spies": [(name, _state_of(x)) for name, x in references.items()
                      if isinstance(x, Spy)],
            "calls": encode(log.plain_calls() if log is not None else []),
            "rng": torch.get_rng_state()}


def _describe_module(module, part: str):
    """What a test may ask of a student's module, as plain data: ``"parameters"``, each with
    its gradient, or ``"modules"``, each submodule's name, class and nearest torch.nn class."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"a {type(module).__name__} is not an nn.Module")
    if part == "parameters":
        return encode([(name, p, p.grad) for name, p in module.named_parameters()])
    if part == "modules":
        return encode([(name, f"{type(m).__module__}.{type(m).__qualname__}", torch_class(m))
                       for name, m in module.named_modules()])
    raise ValueError(f"unknown part {part!r}")


def _has_state(obj) -> bool:
    from genlab.testing import Spy
    return isinstance(obj, (torch.nn.Module, torch.optim.Optimizer, Spy))


def _state_of(obj):
    """What a call may have changed in a module, optimizer or spy of the test's, as plain data:
    parameters, buffers, gradients, optimizer state, and public attributes holding plain data
    (a test's counters, a spy's records)."""
    from genlab.testing import Spy
    if isinstance(obj, Spy):
        return encode({"attributes": {"": plain_attributes(obj)}})
    if isinstance(obj, torch.nn.Module):
        return encode({"state": dict(obj.state_dict()),
                       "grads": {n: p.grad for n, p in obj.named_parameters()},
                       "attributes": {n: plain_attributes(m) for n, m in obj.named_modules()}})
    return encode({"state": obj.state_dict(), "attributes": {"": plain_attributes(obj)}})


def plain_attributes(obj) -> dict:
    """``obj``'s public attributes that hold plain data (a test's counters)."""
    found = {}
    for name, value in vars(obj).items():
        if name.startswith("_") or name in ("state", "param_groups", "defaults", "training"):
            continue
        try:
            encode(value)
        except TypeError:
            continue
        found[name] = value
    return found


def _tensors_in(value) -> list:
    if type(value) in (torch.Tensor, torch.nn.Parameter):
        return [value]
    if type(value) in (list, tuple):
        return [t for v in value for t in _tensors_in(v)]
    if type(value) is dict:
        return [t for v in value.values() for t in _tensors_in(v)]
    return []


@contextlib.contextmanager
def _context(request: dict):
    """The test's context around the call: forbidden torch routines, reference functions in
    place of the student's own (:class:`genlab.testing.using_references`)."""
    from genlab import testing
    with contextlib.ExitStack() as stack:
        for names, what in request.get("forbid", []):
            stack.enter_context(testing.forbid_calls(names, what))
        for what in request.get("forbid_distributions", []):
            stack.enter_context(testing.forbid_distributions(what))
        log = stack.enter_context(testing.CallLog()) if request.get("log_calls") else None
        import pickle
        references = {name: pickle.loads(data)
                      for name, data in request.get("references", {}).items()}
        if references:
            swap = testing.using_references(**references)
            swap.namespace = _user_namespace()
            stack.enter_context(swap)
        yield log, references


def builtin_exception(name: str) -> type[BaseException] | None:
    """The built-in exception class called ``name`` (ValueError, ...), if there is one."""
    obj = getattr(builtins, name, None)
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None
