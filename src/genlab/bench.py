"""``genlab bench``: training throughput of genlab's loop against the pytorch/examples pipeline.

Two models, each trained by two pipelines on the same images, in one run:

- ``mlp_vae``: the pytorch/examples MNIST VAE (:class:`genlab.vae.MLPVAE`);
- ``conv_vae``: genlab's reference conv VAE (:class:`genlab.vae.VAE`).

Pipelines:

- ``genlab``: :func:`genlab.training.fit`, the images held as one tensor on the device, batches
  by indexing, channels-last for the conv VAE, bf16 autocast on CUDA, and fit's default
  optimizer, Adam with its fused kernel where PyTorch has one (the same update rule);
- ``baseline``: what pytorch/examples ``vae/main.py`` does: a torchvision-style Dataset of uint8
  images that makes a PIL image and applies ``transforms.ToTensor()`` on every item, a
  ``DataLoader`` (batch 128, shuffle; ``num_workers=1, pin_memory=True`` on CUDA), fp32,
  PyTorch's default Adam, and its training step (``loss.item()`` every step).

Both use the same initial weights, loss (:func:`genlab.vae.elbo_loss`), optimizer (Adam, lr 1e-3),
batch size and number of images; each timing includes the pipeline's own data preparation.
"""
from __future__ import annotations

import copy
import json
import os
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from . import config
from .device import describe, get_device
from .training import _wants_channels_last, adam, fit
from .vae import MLPVAE, VAE, elbo_loss, vae_loss

MODELS = {"mlp_vae": MLPVAE, "conv_vae": VAE}


class ToTensorDataset(Dataset):
    """Like ``torchvision.datasets.MNIST``: uint8 images ``(N, 28, 28)``, and every item is turned
    into a PIL image and then a float tensor by ``transforms.ToTensor()``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels
        self.transform = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        image = Image.fromarray(self.images[index].numpy())  # mode "L" for uint8 (28, 28)
        return self.transform(image), int(self.labels[index])


def train_baseline(model, images, labels, device, epochs, batch_size=128):
    """pytorch/examples ``vae/main.py``'s data pipeline and training loop."""
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    dataset = ToTensorDataset(images, labels)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, **kwargs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        train_loss = 0.0
        for data, _ in loader:
            data = data.to(device)
            optimizer.zero_grad()
            logits, mu, logvar = model(data)
            loss = elbo_loss(logits, data, mu, logvar)[0]
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
    return train_loss


def train_genlab(model, images, labels, device, epochs, batch_size=128):
    """genlab's pipeline: the uint8 images moved to the device once, scaled there, then :func:`fit`
    with its defaults."""
    x = images.to(device).unsqueeze(1).float().div_(255)
    return fit(model, x, vae_loss, epochs=epochs, batch_size=batch_size, device=device,
               progress=False)


PIPELINES = {"genlab": train_genlab, "baseline": train_baseline}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` MNIST training images as uint8 ``(n, 28, 28)`` (what torchvision's MNIST stores)."""
    from .data import load_mnist
    x, y = load_mnist("train", limit=n, device="cpu", quiet=True)
    return (x * 255).round().to(torch.uint8).squeeze(1), y


def _source() -> str:
    from .data import data_source
    return data_source("mnist")


def _genlab_label(device: torch.device, model) -> str:
    parts = [f"tensors on {device.type}", "bf16" if device.type == "cuda" else "fp32"]
    if _wants_channels_last(model, device):
        parts.append("channels-last")
    if adam(torch.nn.Linear(1, 1).to(device)).defaults.get("fused"):
        parts.append("fused Adam")
    return f"genlab ({', '.join(parts)})"


def run_bench(images: int | None = None, epochs: int | None = None, repeats: int | None = None,
              batch_size: int = 128, device=None, models=tuple(MODELS), data=None,
              seed: int = 0) -> dict:
    """Time every (model, pipeline) pair ``repeats`` times and return the results as a dict.

    Throughput is that of the fastest run, as ``timeit`` reports: other processes on the machine
    only ever slow a run down, so the best run is the least disturbed measure of each pipeline.

    ``data``: optional ``(images, labels)`` to use instead of :func:`genlab.data.load_mnist`;
    images ``(N, 28, 28)`` or ``(N, 1, 28, 28)``, uint8 or float in [0, 1].
    Defaults: 4,000 images x 1 epoch, 5 repeats (fast mode: 1,024 images, 1 repeat).
    """
    images = images or config.budget(4000, 1024)
    epochs = epochs or 1
    repeats = repeats or config.budget(5, 1)
    device = torch.device(device) if device is not None else get_device()
    x, y = data if data is not None else _load(images)
    source = "given" if data is not None else _source()
    if x.dtype != torch.uint8:
        x = (x * 255).round().to(torch.uint8)
    x, y = x.reshape(-1, 28, 28)[:images].cpu(), y[:images].cpu()

    torch.manual_seed(seed)
    initial = {name: MODELS[name]() for name in models}
    times = {(m, p): [] for m in models for p in PIPELINES}

    def once(name, pipeline, n):
        torch.manual_seed(seed)
        model = copy.deepcopy(initial[name]).to(device)
        _sync(device)
        start = time.perf_counter()
        PIPELINES[pipeline](model, x[:n], y[:n], device, epochs, batch_size)
        _sync(device)
        return time.perf_counter() - start

    for name in models:  # warm-up: kernels, allocator, thread pools
        for pipeline in PIPELINES:
            once(name, pipeline, 2 * batch_size)
    for r in range(repeats):
        for name in models:
            order = list(PIPELINES) if r % 2 == 0 else list(PIPELINES)[::-1]  # take turns first
            for pipeline in order:
                times[name, pipeline].append(once(name, pipeline, len(x)))

    rows, ratios = [], {}
    for name in models:
        rate = {p: len(x) * epochs / min(times[name, p]) for p in PIPELINES}
        ratios[name] = rate["genlab"] / rate["baseline"]
        for p in PIPELINES:
            label = _genlab_label(device, initial[name]) if p == "genlab" else \
                "pytorch/examples (PIL + ToTensor per item, DataLoader, fp32)"
            rows.append({"model": name, "pipeline": p, "label": label, "images_per_s": rate[p],
                         "seconds": times[name, p]})
    return {"device": describe(device), "data": source, "images": len(x), "epochs": epochs,
            "batch_size": batch_size, "repeats": repeats, "rows": rows, "ratios": ratios}


def format_table(result: dict) -> str:
    """The bench result as a plain-text table."""
    lines = [f"genlab bench: {result['images']:,} MNIST training images x {result['epochs']} "
             f"epoch(s), batch {result['batch_size']}, Adam lr 1e-3, "
             f"best of {result['repeats']} run(s)",
             f"device: {result['device']}; data: {result['data']}", "",
             f"{'model':<10} {'pipeline':<62} {'images/s':>9} {'genlab/baseline':>16}"]
    for row in result["rows"]:
        ratio = f"{result['ratios'][row['model']]:.2f}x" if row["pipeline"] == "genlab" else ""
        rate = row["images_per_s"]
        lines.append(f"{row['model']:<10} {row['label']:<62} {rate:>9,.0f} {ratio:>16}")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    """The options of ``genlab bench``."""
    parser.add_argument("what", nargs="?", choices=["training", "grading"], default="training",
                        help="training: genlab's loop vs a plain DataLoader (default); grading: "
                             "autograding throughput vs workers")
    parser.add_argument("--students", type=int, default=4,
                        help="grading: honest students per lab (default 4)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="grading: worker counts to compare (default 1 2, and the core count)")
    parser.add_argument("--labs", nargs="+", default=None, help="grading: labs (default all)")
    parser.add_argument("--images", type=int, default=None, metavar="N",
                        help="training images per run (default 4000; fast mode 1024)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per run (default 1)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per pipeline, the best reported (default 5; fast mode 1)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, ... (default: genlab's device choice)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the results as JSON")


def main(args) -> int:
    if args.what == "grading":
        from .course import bench as grading_bench
        workers = args.workers or sorted({1, 2, os.cpu_count() or 1})
        result = grading_bench.run(args.labs, args.students, workers)
        print(grading_bench.format_result(result))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        return 0
    for option in ("images", "epochs", "repeats"):
        value = getattr(args, option)
        if value is not None and value <= 0:
            print(f"genlab bench: --{option} must be positive, got {value}")
            return 2
    result = run_bench(images=args.images, epochs=args.epochs, repeats=args.repeats,
                       device=args.device)
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"results written to {args.json}")
    return 0
