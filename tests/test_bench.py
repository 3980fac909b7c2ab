"""genlab bench on a tiny budget: it runs, reports every field and writes JSON."""
import json

import pytest
import torch

from genlab import bench, cli


def tiny_data(n=256):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 28, 28, generator=g) * 255).to(torch.uint8)
    return images, torch.randint(0, 10, (n,), generator=g)


def test_run_bench_reports_every_model_and_pipeline():
    result = bench.run_bench(images=256, epochs=1, repeats=1, device="cpu", data=tiny_data())
    assert result["device"].startswith("cpu") and result["images"] == 256 and result["epochs"] == 1
    pairs = {(row["model"], row["pipeline"]) for row in result["rows"]}
    assert pairs == {(m, p) for m in ("mlp_vae", "conv_vae") for p in ("genlab", "baseline")}
    for row in result["rows"]:
        assert row["images_per_s"] > 0 and len(row["seconds"]) == 1
    assert set(result["ratios"]) == {"mlp_vae", "conv_vae"}
    assert all(0.05 < r < 100 for r in result["ratios"].values())  # sanity only: ratios are noisy
    table = bench.format_table(result)
    assert "mlp_vae" in table and "conv_vae" in table and "genlab/baseline" in table


def test_both_pipelines_see_the_same_images(monkeypatch):
    x, y = tiny_data(8)
    dataset = bench.ToTensorDataset(x, y)
    baseline = torch.stack([dataset[i][0] for i in range(8)])  # what ToTensor makes of each item
    seen, fit = [], bench.fit

    def spy(model, data, *args, **kwargs):
        seen.append(data)
        return fit(model, data, *args, **kwargs)

    monkeypatch.setattr(bench, "fit", spy)
    bench.train_genlab(bench.MLPVAE(), x, y, torch.device("cpu"), 1, batch_size=8)
    torch.testing.assert_close(seen[0], baseline, rtol=0, atol=0)


def test_cli_prints_the_table_and_writes_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "_load", lambda n: tiny_data(n))
    out = tmp_path / "bench.json"
    code = cli.main(["bench", "--images", "128", "--epochs", "1", "--repeats", "1", "--device", "cpu",
                     "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "images/s" in printed and "cpu" in printed
    assert json.loads(out.read_text())["images"] == 128


def test_cli_rejects_non_positive_budgets(capsys):
    assert cli.main(["bench", "--images", "0"]) == 2
    assert "--images" in capsys.readouterr().out


def test_loads_mnist_through_genlab_data():
    pytest.importorskip("genlab.data")
    x, y = bench._load(64)
    assert x.shape == (64, 28, 28) and x.dtype == torch.uint8 and len(y) == 64
    assert x.max() > 128  # scaled back to 0..255, not left in [0, 1]
