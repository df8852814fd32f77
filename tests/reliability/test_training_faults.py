"""Training faults stop cleanly; an interrupted run resumes bit for bit."""

import copy

import pytest
import torch
from torch import nn

from warmstart.errors import TrainingDivergedError
from warmstart.init import init_
from warmstart.train import fit

from .conftest import run_cli


class Interrupt(Exception):
    pass


def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 8, generator=g)
    return X, X[:, :3].sum(1, keepdim=True) + 0.1 * torch.randn(300, 1, generator=g)


def model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1))


@pytest.mark.parametrize("strategy", ["full", "lp-ft", "l2sp:0.1", "freeze:1", "discriminative"])
@pytest.mark.parametrize("stop_after", [1, 4, 9])
def test_interrupted_and_resumed_run_is_bit_identical(strategy, stop_after):
    X, y = data()
    kwargs = dict(strategy=strategy, epochs=12, lr=3e-3, batch_size=32, val_fraction=0.2, patience=3, seed=5)
    from warmstart.strategies import parse_strategy

    if strategy == "lp-ft":
        kwargs["strategy"] = parse_strategy("lp-ft", probe_epochs=5)
    reference = model()
    full = fit(reference, X, y, **kwargs)

    saved = []

    def interrupt(state):
        saved.append(state)
        if state.epoch == stop_after:
            raise Interrupt

    interrupted = model()
    with pytest.raises(Interrupt):
        fit(interrupted, X, y, on_state=interrupt, **kwargs)
    resumed = model(seed=99)  # a fresh process would rebuild the model from scratch
    result = fit(resumed, X, y, resume=copy.deepcopy(saved[-1]), **kwargs)
    for (k, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert result.epochs_run == full.epochs_run and result.best_epoch == full.best_epoch
    assert [r["val_loss"] for r in result.history] == [r["val_loss"] for r in full.history]


def test_exploding_learning_rate_stops_with_epoch_step_and_layer_in_the_cli(tmp_path, small_csv):
    code, text = run_cli("pretrain", small_csv, "--target", "salary_in_usd", "--out", tmp_path / "o",
                         "--lr", "1e6", "--epochs", "20")
    assert code == 1 and "loss became non-finite at epoch" in text and "step" in text and "first bad layer" in text
    assert not (tmp_path / "o").exists(), "no checkpoint of a diverged run"


def test_uniform_init_of_16_layers_keeps_the_last_finite_weights():
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(16) for m in (nn.Linear(64, 64), nn.ReLU())], nn.Linear(64, 1))
    init_(net, "uniform")
    before = copy.deepcopy(net.state_dict())
    X = torch.randn(64, 64)
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 1 .*first bad layer: \d+ \(explode"):
        fit(net, X, X[:, :1], epochs=3)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    code, text = run_cli("init-report", "--layers", ",".join(["64"] * 17 + ["1"]), "--scheme", "uniform")
    assert code == 0 and "activations explode first at layer" in text


def test_pretrain_killed_mid_training_resumes_to_the_same_weights(tmp_path, small_csv):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    exe = Path(sys.executable).parent / "warmstart"
    if not exe.exists():
        pytest.skip("warmstart console script not installed next to this interpreter")
    args = ["pretrain", str(small_csv), "--target", "salary_in_usd", "--epochs", "60", "--patience", "60",
            "--batch-size", "16", "--seed", "2"]
    code, text = run_cli(*args, "--out", tmp_path / "whole")
    assert code == 0, text

    target = tmp_path / "cut"
    journal = tmp_path / ".cut.resume.pt"
    proc = subprocess.Popen([exe, *args, "--out", str(target)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not journal.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # a few more epochs
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if target.exists():
        pytest.skip("the run finished before it could be interrupted")
    assert journal.exists()
    code, text = run_cli(*args, "--out", target, "--resume")
    assert code == 0, text
    assert (target / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (target / "history.csv").read_text().count("\n") == (tmp_path / "whole" / "history.csv").read_text().count("\n")
    assert not journal.exists(), "the journal goes once the checkpoint is saved"


def test_resume_with_other_settings_or_nothing_recorded_is_refused(tmp_path, small_csv):
    args = ["pretrain", str(small_csv), "--target", "salary_in_usd", "--epochs", "3", "--out", tmp_path / "o"]
    code, text = run_cli(*args, "--resume")
    assert code == 1 and "nothing to resume" in text
    from warmstart.tabular.workflow import ResumeJournal

    ResumeJournal(tmp_path / "o", {"lr": 123}).write(
        __import__("warmstart.train", fromlist=["TrainState"]).TrainState(
            1, 0, 1, {}, {}, torch.Generator().get_state(), (1.0, 1, None), 0, [], None))
    code, text = run_cli(*args, "--resume")
    assert code == 1 and "other settings or data" in text
