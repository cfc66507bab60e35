"""The shared training loop: it trains, reuses matching checkpoints, and respects the progress switch."""
import pytest
import torch

from hitchhiker.book.common.training import fit
from hitchhiker.book.common.training import default_progress_bar, geometric_anneal, linear_warmup


def _problem():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = torch.nn.Linear(3, 1, bias=False)
    data = torch.cat([x, y[:, None]], 1)

    def loss_fn(m, batch, progress):
        return ((m(batch[:, :3]).squeeze(1) - batch[:, 3]) ** 2).mean()

    return model, loss_fn, data


def test_fit_lowers_the_loss_and_reuses_a_matching_checkpoint(tmp_path):
    model, loss_fn, data = _problem()
    path = tmp_path / "run.pt"
    history = fit(model, loss_fn, data, epochs=30, batch_size=16, lr=0.05, checkpoint=path,
                  settings={"method": "demo"})
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    fresh, _, _ = _problem()
    again = fit(fresh, loss_fn, data, epochs=30, batch_size=16, lr=0.05, checkpoint=path,
                settings={"method": "demo"})
    assert again == history and torch.equal(fresh.weight, model.weight)
    other, _, _ = _problem()  # different settings: the checkpoint is not reused
    fit(other, loss_fn, data, epochs=1, batch_size=16, lr=0.05, checkpoint=path, settings={"method": "x"})
    assert not torch.equal(other.weight, model.weight)


def test_fit_rejects_bad_arguments():
    model, loss_fn, data = _problem()
    with pytest.raises(ValueError, match="optimizer"):
        fit(model, loss_fn, data, epochs=1, batch_size=8, optimizer="lbfgs")
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, loss_fn, data, epochs=1, batch_size=0)


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("HITCHHIKER_SCALE", "default")
    monkeypatch.delenv("HITCHHIKER_PROGRESS", raising=False)
    assert default_progress_bar()
    monkeypatch.setenv("HITCHHIKER_PROGRESS", "0")
    assert not default_progress_bar()
    monkeypatch.setenv("HITCHHIKER_PROGRESS", "1")
    monkeypatch.setenv("HITCHHIKER_SCALE", "smoke")
    assert not default_progress_bar()


def test_schedules():
    assert linear_warmup(0.0, 0.25) == 0.0 and linear_warmup(0.125, 0.25) == 0.5
    assert linear_warmup(0.9, 0.25) == 1.0 and linear_warmup(0.1, 0.0) == 1.0
    assert geometric_anneal(0.0, 1.0, 0.01) == 1.0
    assert geometric_anneal(1.0, 1.0, 0.01) == pytest.approx(0.01)
    assert geometric_anneal(0.5, 1.0, 0.01) == pytest.approx(0.1)
