"""vaekit.nn: MLP trunks, the activation table and the one condition-injection network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vaekit as vk
from vaekit.nn import ACTIVATIONS, ConditionedMLP, mlp


def test_activation_names():
    # The names are stored in model files and run configs: each is torch.nn's class of that name.
    assert sorted(ACTIVATIONS) == ["elu", "gelu", "leaky_relu", "relu", "silu", "tanh"]
    for name, cls in ACTIVATIONS.items():
        assert cls is getattr(nn, cls.__name__) and cls.__name__.lower() == name.replace("_", ""), name


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_is_linear_then_activation_per_hidden_width(activation):
    net = mlp(3, (5, 4), 2, activation)
    kind = ACTIVATIONS[activation]
    assert [type(m) for m in net] == [nn.Linear, kind, nn.Linear, kind, nn.Linear]
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 5), (5, 4), (4, 2)]
    assert all(m.bias is not None for m in linears)


def test_mlp_without_hidden_layers_is_one_linear():
    net = mlp(3, (), 2)
    assert len(net) == 1 and type(net[0]) is nn.Linear
    assert (net[0].in_features, net[0].out_features) == (3, 2)


def test_mlp_default_activation_is_relu():
    assert type(mlp(2, (4,), 1)[1]) is nn.ReLU


def _reader(net: ConditionedMLP, in_features: int, width: int) -> None:
    """Set a hidden-less network's one Linear to output the ``width`` columns after the first ``in_features``."""
    linear = net.net[0]
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[:, in_features : in_features + width] = torch.eye(width)
        linear.bias.zero_()


# Products with 0 and 1 and sums with zeros are exact: an output that reads a column equals it.
X = torch.tensor([[0.3, -1.2], [2.0, 0.7], [-0.4, 5.0]])


def test_onehot_condition_is_concatenated_after_the_input():
    net = ConditionedMLP(2, (), 4, condition=vk.OneHot(4))
    assert type(net.embed) is nn.Identity
    assert net.net[0].in_features == 2 + 4
    c = vk.OneHot(4).prepare([3, 0, 2])
    _reader(net, 2, 4)
    assert torch.equal(net(X, c), c)
    # The first columns are the input itself: cat(inputs, embed(c)), in that order.
    with torch.no_grad():
        net.net[0].weight.zero_()
        net.net[0].weight[:2, :2] = torch.eye(2)
    assert torch.equal(net(X, c)[:, :2], X) and torch.equal(net(X, c)[:, 2:], torch.zeros(3, 2))


def test_raw_continuous_condition_is_fed_as_is():
    condition = vk.Continuous(3, embed=0)
    net = ConditionedMLP(2, (), 3, condition=condition)
    assert type(net.embed) is nn.Identity
    assert net.net[0].in_features == 2 + 3
    c = condition.prepare([[0.5, -7.25, 3.0], [1e3, 0.0, -2.5], [4.0, 4.5, -0.125]])
    _reader(net, 2, 3)
    assert torch.equal(net(X, c), c)


def test_embedded_continuous_condition_passes_through_its_embedding():
    condition = vk.Continuous(2, embed=5)
    net = ConditionedMLP(2, (), 5, condition=condition)
    assert [type(m) for m in net.embed] == [nn.Linear, nn.ReLU, nn.Linear]
    assert net.net[0].in_features == 2 + 5
    c = condition.prepare([[0.5, -7.0], [1.0, 0.0], [4.0, 4.5]])
    _reader(net, 2, 5)
    assert torch.equal(net(X, c), net.embed(c))
    # The embedding is trained with the network: its weights are the module's parameters.
    assert {id(p) for p in net.embed.parameters()} <= {id(p) for p in net.parameters()}


def test_hidden_layers_carry_the_condition_through():
    # One-hot values are >= 0, so a ReLU layer passes them on unchanged.
    net = ConditionedMLP(2, (4,), 4, condition=vk.OneHot(4))
    first, last = net.net[0], net.net[2]
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:, 2:] = torch.eye(4)
        first.bias.zero_()
        last.weight.copy_(torch.eye(4))
        last.bias.zero_()
    c = vk.OneHot(4).prepare([1, 3, 0])
    assert torch.equal(net(X, c), c)


def test_without_condition_it_is_the_plain_mlp():
    net = ConditionedMLP(3, (4,), 2, activation="tanh")
    assert net.embed is None
    assert [type(m) for m in net.net] == [nn.Linear, nn.Tanh, nn.Linear]
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(net(x), net.net(x))


def test_the_vae_builds_its_networks_from_conditioned_mlps():
    model = vk.VAE(3, 2, hidden=(8, 6), condition=vk.Continuous(1, embed=4), activation="elu")
    for net in (model.encoder, model.decoder):
        assert isinstance(net, ConditionedMLP) and [type(m) for m in net.embed] == [nn.Linear, nn.ReLU, nn.Linear]
        assert all(type(m) is nn.ELU for m in net.net[1::2])
    assert _widths(model.encoder) == [(3 + 4, 8), (8, 6), (6, 2 * 2)]
    assert _widths(model.decoder) == [(2 + 4, 6), (6, 8), (8, 3)]


def _widths(net: ConditionedMLP) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in net.net if isinstance(m, nn.Linear)]
