"""EMAGenerator computes exactly what torch's AveragedModel with the EMA average computes."""

from __future__ import annotations

import math

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gandist.training.ema import EMAGenerator, ramped_decay


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


class _G(torch.nn.Module):
    """A conditional MLP generator with BatchNorm, as gandist's G signature: G(z, y)."""

    z_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(3, 4)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.net(z + (0 if y is None else self.embed(y)))


def test_sampling_copy_has_the_averaged_networks_own_norm_statistics() -> None:
    """The EMA averages BatchNorm's running statistics along with the weights, which then
    describe other networks: the sampling copy recomputes them from its own activations, and
    leaves the EMA (the training state) untouched."""
    torch.manual_seed(0)
    G = _G()
    ema = EMAGenerator(G, 0.5)
    opt = torch.optim.SGD(G.parameters(), lr=0.2)
    for _ in range(6):
        opt.zero_grad()
        out = G(torch.randn(64, 4) + 2, torch.randint(3, (64,)))
        (out - torch.arange(8.0)).pow(2).mean().backward()
        opt.step()
        ema.update_parameters(G)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    copy_ = ema.for_sampling("class", 3, seed=7)
    assert all(torch.equal(v, ema.module.state_dict()[k]) for k, v in before.items())
    assert not copy_.training
    bn = copy_.net[1]
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        h = copy_.net[0](
            torch.randn(20000, 4, generator=g)
            + copy_.embed(torch.randint(3, (20000,), generator=g))
        )
    assert torch.allclose(bn.running_mean, h.mean(0), atol=0.05)
    assert torch.allclose(bn.running_var, h.var(0), rtol=0.1)
    # the averaged statistics were another network's (trained on z + 2: means near 2x the weights)
    assert not torch.allclose(before["net.1.running_mean"], h.mean(0), atol=0.05)
    # deterministic: the same seed gives the same statistics
    again = ema.for_sampling("class", 3, seed=7)
    assert torch.equal(again.net[1].running_mean, bn.running_mean)


def test_sampling_copy_is_made_once_per_ema_state_and_not_without_batchnorm() -> None:
    G = _G()
    ema = EMAGenerator(G, 0.5)
    ema.update_parameters(G)
    first = ema.for_sampling("class", 3, seed=1)
    assert ema.for_sampling("class", 3, seed=1) is first  # a step's eval and grid share it
    ema.update_parameters(G)
    assert ema.for_sampling("class", 3, seed=1) is not first
    plain = EMAGenerator(torch.nn.Linear(2, 2), 0.5)
    assert plain.for_sampling("none", 0, seed=1) is plain.module  # no statistics to fix


def test_rampup_caps_the_half_life_then_reaches_the_decay() -> None:
    assert ramped_decay(0.999, 0.0, 5) == 0.999  # off: the plain EMA
    half_life = math.log(0.5) / math.log(0.999)  # ~693 updates
    decays = [ramped_decay(0.999, 0.05, n) for n in (0, 1, 10, 100, 1000, 13_000, 14_000)]
    assert decays[0] < 1e-6  # the first update copies whatever the ramp says
    assert decays == sorted(decays) and decays[2] < 0.5  # young: mostly the newest G
    assert math.isclose(decays[3], 0.5 ** (1 / 5.0))  # half-life 0.05 x 100 updates
    assert decays[-2] < 0.999 and decays[-1] == 0.999  # capped from half_life / 0.05 on
    assert half_life / 0.05 < 14_000


def test_rampup_update_and_resume_mid_ramp_match_the_formula() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    straight = EMAGenerator(net, 0.9, rampup=0.5)
    expected = net.weight.detach().clone()
    snapshots = []
    for n in range(6):
        with torch.no_grad():
            net.weight.add_(1.0)
        straight.update_parameters(net)
        d = ramped_decay(0.9, 0.5, n)
        expected = net.weight.detach().clone() if n == 0 else d * expected + (1 - d) * net.weight
        snapshots.append(net.weight.detach().clone())
        assert torch.allclose(straight.module.weight, expected, atol=1e-6)
    resumed = EMAGenerator(torch.nn.Linear(3, 2), 0.9, rampup=0.5)  # a resume after 3 updates
    again = EMAGenerator(torch.nn.Linear(3, 2), 0.9, rampup=0.5)
    for w in snapshots[:3]:
        with torch.no_grad():
            net.weight.copy_(w)
        again.update_parameters(net)
    resumed.module.load_state_dict(again.module.state_dict())
    resumed.load_count(3)
    for w in snapshots[3:]:
        with torch.no_grad():
            net.weight.copy_(w)
        resumed.update_parameters(net)
    assert torch.equal(resumed.module.weight, straight.module.weight)
