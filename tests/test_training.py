"""The one trainer: the same numbers as a plain loop, bit-identical resume and extension, and
checkpoints that are never silently discarded, trusted, or run."""
import math
import os
import threading
import warnings

import pytest
import torch

from hitchhiker.book.common.checkpoint import CheckpointError, atomic_save, load_checkpoint
from hitchhiker.book.common.minibatches import GeneratorOrder, Minibatches, RandpermOrder
from hitchhiker.book.common.runtime import seed_everything
from hitchhiker.book.common.schedule import Schedule
from hitchhiker.book.common.training import default_progress_bar, train


def _problem(n=64):
    torch.manual_seed(0)
    x = torch.randn(n, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = torch.nn.Linear(3, 1, bias=False)
    data = torch.cat([x, y[:, None]], 1)

    def loss_fn(m, batch, progress):
        return ((m(batch[:, :3]).squeeze(1) - batch[:, 3]) ** 2).mean() * (1 + 0.01 * torch.randn(()))

    return model, loss_fn, data


def _fit(model, loss_fn, items, *, epochs, batch_size, lr, seed=0, **kwargs):
    """A plain model's run: shuffled minibatches from the global generator, constant lr, progress."""
    batches = Minibatches(items, batch_size, RandpermOrder(items.shape[0]))
    total = epochs * batches.steps_per_epoch
    return train(model, lambda m, batch, step: loss_fn(m, batch, step / total), batches,
                 Schedule(steps=total, lr=lr), seed=seed, **kwargs)


def test_a_plain_run_is_the_plain_loop_bit_for_bit():
    model, loss_fn, data = _problem(70)
    history = _fit(model, loss_fn, data, epochs=5, batch_size=16, lr=0.05, seed=3)
    reference, _, _ = _problem(70)      # the loop the book's plain models trained with, written out
    seed_everything(3)
    opt = torch.optim.Adam(reference.parameters(), lr=0.05, weight_decay=0.0)
    losses = []
    for epoch in range(5):
        order, running = torch.randperm(70), 0.0
        for start in range(0, 70, 16):
            batch = data[order[start:start + 16]]
            loss = loss_fn(reference, batch, None)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item() * batch.shape[0]
        losses.append(running / 70)
    assert history["loss"] == losses and torch.equal(model.weight, reference.weight)


def test_a_matching_checkpoint_is_reused_and_other_settings_kept_apart(tmp_path):
    model, loss_fn, data = _problem()
    args = dict(epochs=30, batch_size=16, lr=0.05, checkpoint=tmp_path / "run", data={"train": data})
    history = _fit(model, loss_fn, data, identity={"method": "demo"}, **args)
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    fresh, _, _ = _problem()
    again = _fit(fresh, loss_fn, data, identity={"method": "demo"}, **args)
    assert again["loss"] == history["loss"] and torch.equal(fresh.weight, model.weight)
    other, _, _ = _problem()  # other settings: another file, the first one kept
    _fit(other, loss_fn, data, identity={"method": "x"}, **{**args, "epochs": 1})
    assert not torch.equal(other.weight, model.weight) and len(list(tmp_path.glob("run-*.pt"))) == 2


def test_bad_arguments_are_refused_by_name():
    model, loss_fn, data = _problem()
    batches = Minibatches(data, 8, RandpermOrder(64))
    with pytest.raises(ValueError, match="optimizer"):
        train(model, lambda m, b, s: m(b[:, :3]).sum(), batches, Schedule(steps=4), optimizer="lbfgs")
    with pytest.raises(ValueError, match="batch_size"):
        Minibatches(data, 0, RandpermOrder(64))
    with pytest.raises(ValueError, match="checkpoint_every"):
        train(model, lambda m, b, s: m(b[:, :3]).sum(), batches, Schedule(steps=4), checkpoint_every=0)
    with pytest.raises(ValueError, match="identity"):
        train(model, lambda m, b, s: m(b[:, :3]).sum(), batches, Schedule(steps=4), checkpoint="x")
    with pytest.raises(ValueError, match="eval_steps"):
        train(model, lambda m, b, s: m(b[:, :3]).sum(), batches, Schedule(steps=4), evaluate=len,
              eval_steps=[5])
    with pytest.raises(ValueError, match="steps"):
        Schedule(steps=0)
    with pytest.raises(ValueError, match="lr_final"):
        Schedule(steps=10, lr=1e-3, lr_final=1.0)
    with pytest.raises(FloatingPointError, match="step 0"):
        train(model, lambda m, b, s: m(b[:, :3]).sum() * math.inf, batches, Schedule(steps=4))


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("HITCHHIKER_SCALE", "default")
    monkeypatch.delenv("HITCHHIKER_PROGRESS", raising=False)
    assert default_progress_bar()
    monkeypatch.setenv("HITCHHIKER_PROGRESS", "0")
    assert not default_progress_bar()
    monkeypatch.setenv("HITCHHIKER_PROGRESS", "1")
    monkeypatch.setenv("HITCHHIKER_SCALE", "smoke")
    assert not default_progress_bar()


def test_cosine_forms_match_their_references():
    s = Schedule(steps=1000, warmup_steps=100, lr=5e-3, lr_final=1e-5)
    assert s.learning_rate(0) == pytest.approx(5e-5) and s.learning_rate(99) == pytest.approx(5e-3)
    assert s.learning_rate(999) == pytest.approx(1e-5)
    # "lambdalr" is exactly what torch's LambdaLR gave the POGLM, step by step
    total, lr, final = 300, 1e-2, 1e-4
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: (final + 0.5 * (lr - final) * (1 + math.cos(math.pi * k / total))) / lr)
    ours = Schedule(steps=total, lr=lr, lr_final=final, decay_steps=total, cosine_form="lambdalr")
    for k in range(total):
        assert ours.learning_rate(k) == opt.param_groups[0]["lr"]
        opt.step()
        sched.step()


def _stack_problem(n_members=3, n=21):
    g = torch.Generator().manual_seed(0)
    data = torch.randn(n_members, n, 4, generator=g)

    class Stack(torch.nn.Module):
        def __init__(self, seeds):
            super().__init__()
            self.w = torch.nn.Parameter(torch.stack(
                [torch.randn(3, generator=torch.Generator().manual_seed(s)) for s in seeds]))

        def forward(self, batch):                      # (E, b, 4) -> per-member loss (E,)
            return ((batch[..., :3] * self.w[:, None]).sum(-1) - batch[..., 3]).pow(2).mean(-1) * 50

    return Stack, data


def test_a_stacked_member_trains_as_it_would_alone():
    Stack, data = _stack_problem()
    schedule = Schedule(steps=12, lr=0.1, lr_final=0.01, clip_norm=1.0)       # the clip is active
    stack = Stack([0, 1, 2])
    seeds_order = Minibatches(data, 5, lambda epoch: torch.stack(
        [torch.randperm(21, generator=torch.Generator().manual_seed(100 * e + epoch)) for e in range(3)]),
        per_member=True)
    train(stack, lambda m, b, s: m(b), seeds_order, schedule, optimizer="adamax")
    alone = Stack([1])
    train(alone, lambda m, b, s: m(b), Minibatches(data[1:2], 5, lambda epoch: torch.randperm(
        21, generator=torch.Generator().manual_seed(100 + epoch))[None], per_member=True), schedule,
        optimizer="adamax")
    torch.testing.assert_close(stack.w[1], alone.w[0], rtol=0, atol=1e-6)


def _interrupted(tmp_path, steps, stop_at, **kwargs):
    """Train a stack to ``steps`` with checkpoints, stopped by an error at ``stop_at`` and resumed."""
    Stack, data = _stack_problem()

    class Stop(Exception):
        pass

    stop = [stop_at]

    def loss_fn(m, batch, step):
        if step == stop[0]:
            raise Stop
        return m(batch) * (1 + 0.01 * torch.randn(()))              # uses the global generator

    args = dict(optimizer="adamw", seed=4, evaluate=lambda m: m.w.sum(1), eval_steps=[0, 5, steps],
                identity={"demo": 1}, data={"train": data}, **kwargs)
    model = Stack([0, 1, 2])
    def batches():
        return Minibatches(data, 8, GeneratorOrder(3, 21, seed=7), per_member=True)
    schedule = Schedule(steps=steps, lr=0.05)
    with pytest.raises(Stop):
        train(model, loss_fn, batches(), schedule, checkpoint=tmp_path / "run", checkpoint_every=2, **args)
    stop[0] = None
    resumed = Stack([0, 1, 2])
    history = train(resumed, loss_fn, batches(), schedule, checkpoint=tmp_path / "run", **args)
    full = Stack([0, 1, 2])
    reference = train(full, lambda m, b, s: m(b) * (1 + 0.01 * torch.randn(())), batches(), schedule, **args)
    return resumed, history, full, reference


def test_resumed_run_equals_the_uninterrupted_one(tmp_path):
    resumed, history, full, reference = _interrupted(tmp_path, steps=11, stop_at=7)   # mid-epoch (3/epoch)
    assert torch.equal(resumed.w, full.w)
    assert history["loss"] == reference["loss"] and history["eval"] == reference["eval"]


def test_a_longer_run_extends_a_finished_one_when_the_schedule_allows(tmp_path):
    Stack, data = _stack_problem()
    args = dict(optimizer="adam", seed=1, identity={"demo": 2}, data={"train": data},
                checkpoint=tmp_path / "run")
    def batches():
        return Minibatches(data, 8, GeneratorOrder(3, 21, seed=7), per_member=True)
    short = Stack([0, 1, 2])
    train(short, lambda m, b, s: m(b), batches(), Schedule(steps=6, lr=0.05), **args)
    (first,) = tmp_path.glob("run-*.pt")
    stamp = first.read_bytes()
    longer = Stack([0, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # an extension, no warning
        schedule = Schedule(steps=10, lr=0.05)        # constant: the first 6 steps are the short run's
        train(longer, lambda m, b, s: m(b), batches(), schedule, **args,
              extend=lambda old: schedule.same_start(old, annealed_temperature=False))
    fresh = Stack([0, 1, 2])
    train(fresh, lambda m, b, s: m(b), batches(), Schedule(steps=10, lr=0.05), **{**args, "checkpoint": None})
    assert torch.equal(longer.w, fresh.w) and first.read_bytes() == stamp      # the 6-step file is kept
    assert len(list(tmp_path.glob("run-*.pt"))) == 2
    # a cosine set by the run's length: a longer run is another run, started anew, the old file kept
    cosine = dict(lr=0.05, lr_final=0.001)
    train(Stack([0, 1, 2]), lambda m, b, s: m(b), batches(), Schedule(steps=6, **cosine), **args)
    with pytest.warns(UserWarning, match="cannot be extended"):
        train(Stack([0, 1, 2]), lambda m, b, s: m(b), batches(), Schedule(steps=10, **cosine), **args)
    assert len(list(tmp_path.glob("run-*.pt"))) == 4


@pytest.mark.parametrize("change", ["train row 70", "val row 3", "val shape"])
def test_changed_data_is_refused_never_reloaded(tmp_path, change):
    model, loss_fn, data = _problem(100)
    val = torch.randn(10, 4)
    args = dict(seed=0, identity={"demo": 3}, checkpoint=tmp_path / "run")
    batches = Minibatches(data, 16, RandpermOrder(100))
    train(model, lambda m, b, s: loss_fn(m, b, s), batches, Schedule(steps=7),
          data={"train": data, "val": val}, **args)
    data2, val2 = data.clone(), val.clone()
    if change == "train row 70":
        data2[70, 0] += 1e-3
    elif change == "val row 3":
        val2[3, 2] = -val2[3, 2]
    else:
        val2 = torch.cat([val2, val2[:1]])
    with pytest.raises(CheckpointError, match=r"run-.*\.pt.*data\.(train|val)"):
        train(_problem(100)[0], lambda m, b, s: loss_fn(m, b, s), Minibatches(data2, 16, RandpermOrder(100)),
              Schedule(steps=7), data={"train": data2, "val": val2}, **args)


def _saved(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save({"model": {"w": torch.arange(6.0)}, "step": 3}, path)
    return path


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped byte", "nan weights"])
def test_damaged_files_are_refused_by_name(tmp_path, damage):
    path = _saved(tmp_path)
    raw = bytearray(path.read_bytes())
    if damage == "empty":
        raw = bytearray()
    elif damage == "truncated":
        raw = raw[:len(raw) // 2]
    elif damage == "flipped byte":            # inside the tensor's bytes: still a readable zip
        raw[raw.index(torch.arange(6.0).numpy().tobytes()) + 5] ^= 0x10
    else:
        atomic_save({"model": {"w": torch.tensor([1.0, math.nan])}, "step": 3}, path)
        raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="ck.pt"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path):
    _Payload.marker = tmp_path / "pwned"
    path = tmp_path / "ck.pt"
    torch.save({"model": {"w": torch.ones(2)}, "evil": _Payload(), "digest": "x"}, path)
    with pytest.raises(CheckpointError, match="ck.pt"):
        load_checkpoint(path)
    assert not _Payload.marker.exists()
    torch.load(path, weights_only=False)      # what a plain load would have done: run the command
    assert _Payload.marker.exists()


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    before = path.read_bytes()
    real_save = torch.save

    def dies_half_way(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        file.truncate(10)
        raise KeyboardInterrupt("killed during the write")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"model": {"w": torch.zeros(6)}, "step": 4}, path)
    assert path.read_bytes() == before and load_checkpoint(path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]       # no temporary file left


def test_two_writers_do_not_crash(tmp_path):
    path, errors = tmp_path / "ck.pt", []

    def write(k):
        try:
            for i in range(10):
                atomic_save({"model": {"w": torch.full((1000,), float(k))}, "step": i}, path)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and load_checkpoint(path)["step"] == 9


def test_a_process_killed_while_writing_leaves_the_previous_file(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path, inside = tmp_path / "ck.pt", tmp_path / "inside-the-write"
    writer = ("import sys, time, torch\n"
              "from hitchhiker.book.common.checkpoint import atomic_save, atomic_write\n"
              "atomic_save({'model': {'w': torch.ones(3)}, 'step': 1}, sys.argv[1])\n"
              "def write(file):\n"
              "    file.write(b'half a checkpoint')\n"
              "    file.flush()\n"
              "    open(sys.argv[2], 'w').close()\n"
              "    time.sleep(120)\n"
              "atomic_write(sys.argv[1], write)\n")
    process = subprocess.Popen([sys.executable, "-c", writer, str(path), str(inside)])
    try:
        deadline = time.time() + 60
        while not inside.exists() and time.time() < deadline:
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert inside.exists()                            # killed in the middle of the second write
    assert load_checkpoint(path)["step"] == 1         # the previous file, whole
    assert len(list(tmp_path.glob(".ck.pt.*.tmp"))) == 1   # what the kill left is a temporary file
