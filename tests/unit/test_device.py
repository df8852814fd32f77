import pytest
import torch

from warmstart.device import resolve_device
from warmstart.errors import ConfigError
from warmstart.train import fit


def test_none_keeps_the_models_device_and_auto_picks_what_exists(tiny_mlp):
    assert resolve_device(None, tiny_mlp) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_cuda_is_a_clear_error(tiny_mlp, regression_data):
    with pytest.raises(ConfigError, match="CUDA is not available here"):
        fit(tiny_mlp, *regression_data, epochs=1, device="cuda")


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_explicit_cpu_device_trains_like_the_default(regression_data):
    def run(device):
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        fit(m, *regression_data, epochs=3, device=device)
        return m.state_dict()

    a, b = run(None), run("cpu")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_cpu_within_tolerance(regression_data):
    def run(device):
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        fit(m, *regression_data, epochs=3, device=device)
        return {k: v.cpu() for k, v in m.state_dict().items()}

    a, b = run("cpu"), run("cuda")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
