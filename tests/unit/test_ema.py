"""EMAGenerator computes exactly what torch's AveragedModel with the EMA average computes."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gandist.training.ema import EMAGenerator


def test_same_numbers_as_averaged_model_buffers_included() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    ref = AveragedModel(net, use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    ours = EMAGenerator(net, 0.9)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(5):
        net(torch.randn(8, 3)).sum().backward()
        opt.step()
        ref.update_parameters(net)
        ours.update_parameters(net)
    for a, b in zip(
        ref.module.state_dict().values(), ours.module.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert int(ours.n_averaged) == int(ref.n_averaged) == 5


def test_a_loaded_count_keeps_the_average() -> None:
    net = torch.nn.Linear(2, 2)
    ema = EMAGenerator(net, 0.5)
    with torch.no_grad():
        ema.module.weight.fill_(1.0)
    ema.load_count(3)  # resumed: the next update averages, it does not copy
    with torch.no_grad():
        net.weight.fill_(3.0)
    ema.update_parameters(net)
    assert torch.allclose(ema.module.weight, torch.full((2, 2), 2.0))
    assert int(ema.n_averaged) == 4
