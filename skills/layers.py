"""The plain multi-layer perceptron every skills model builds its small networks from.
One helper, so layer order (and with it every saved state_dict key) is written once."""

from __future__ import annotations

from torch import nn


def mlp(
    in_dim: int, hidden: int, out_dim: int, layers: int, activation: type[nn.Module], layer_norm: bool = False
) -> nn.Sequential:
    """``layers`` hidden blocks of Linear [-> LayerNorm] -> activation, then a Linear head: (B, in_dim) -> (B, out_dim).

    State_dict keys are the Sequential's indices ("0.weight", ...), the layout saved checkpoints hold.
    """
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        modules.append(nn.Linear(width, hidden))
        if layer_norm:
            modules.append(nn.LayerNorm(hidden))
        modules.append(activation())
        width = hidden
    modules.append(nn.Linear(width, out_dim))
    return nn.Sequential(*modules)
