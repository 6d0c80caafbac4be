"""Optimizers from config, and resuming with changed hyper-parameters: torch's load_state_dict
brings back the checkpoint's param groups, so the config's betas / eps / momentum / weight decay
are written back over them (training/optimizers.py) and the changes are named."""

from __future__ import annotations

import pytest
import torch

from gandist.config import OptimizerConfig
from gandist.training.optimizers import apply_settings, build_optimizer


def trained(cfg: OptimizerConfig) -> tuple[torch.nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = build_optimizer(net.parameters(), cfg)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 3)).square().sum().backward()
        opt.step()
    return net, opt


@pytest.mark.parametrize(
    ("saved", "resumed", "keys"),
    [
        (
            OptimizerConfig(name="adam", betas=[0.0, 0.9]),
            OptimizerConfig(name="adam", betas=[0.5, 0.999], eps=1e-6),
            ["betas", "eps"],
        ),
        (
            OptimizerConfig(name="rmsprop", alpha=0.99),
            OptimizerConfig(name="rmsprop", alpha=0.9, weight_decay=1e-4),
            ["alpha", "weight_decay"],
        ),
        (
            OptimizerConfig(name="sgd", momentum=0.9),
            OptimizerConfig(name="sgd", momentum=0.5),
            ["momentum"],
        ),
    ],
)
def test_resumed_optimizer_takes_the_configs_settings_and_names_them(
    saved: OptimizerConfig, resumed: OptimizerConfig, keys: list[str]
) -> None:
    net, opt = trained(saved)
    state = opt.state_dict()
    fresh = build_optimizer(net.parameters(), resumed)
    fresh.load_state_dict(state)
    # what torch alone does: the saved settings come back, the config's are lost
    assert (
        fresh.param_groups[0][keys[0]]
        != build_optimizer(net.parameters(), resumed).param_groups[0][keys[0]]
    )
    changed = apply_settings(fresh, resumed, "d")
    assert [line.split()[0] for line in changed] == [f"optim.d.{k}" for k in keys]
    rebuilt = build_optimizer(net.parameters(), resumed).param_groups[0]
    for k in keys:
        assert fresh.param_groups[0][k] == rebuilt[k], k
    # the moments are kept: only the settings changed
    for p, s in opt.state.items():
        for name, t in s.items():
            assert torch.equal(fresh.state[p][name], t), name
    assert apply_settings(fresh, resumed, "d") == []  # nothing left to change


def test_same_settings_change_nothing_and_say_nothing() -> None:
    cfg = OptimizerConfig(name="adam", betas=[0.0, 0.9], eps=1e-8)
    net, opt = trained(cfg)
    fresh = build_optimizer(net.parameters(), cfg)
    fresh.load_state_dict(opt.state_dict())
    assert apply_settings(fresh, cfg, "g") == []
    assert fresh.param_groups[0]["betas"] == (0.0, 0.9)


def test_the_message_gives_new_and_old_values() -> None:
    net, opt = trained(OptimizerConfig(name="adam", betas=[0.0, 0.9]))
    new = OptimizerConfig(name="adam", betas=[0.5, 0.999])
    fresh = build_optimizer(net.parameters(), new)
    fresh.load_state_dict(opt.state_dict())
    (line,) = apply_settings(fresh, new, "g")
    assert line == (
        "optim.g.betas is [0.5, 0.999] from here on (the checkpoint's optimizer had [0.0, 0.9])"
    )


def test_unknown_optimizer_is_named() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'; use adam, rmsprop or sgd"):
        build_optimizer(torch.nn.Linear(1, 1).parameters(), OptimizerConfig(name="lamb"))
