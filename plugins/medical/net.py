"""A small one-hidden-layer net over the same sparse rows as the linear model.

Its probabilities are averaged with the linear model's (``decision.py`` chooses the
weight): out-of-fold on the training patients the average beat the linear model alone on
both micro-F1 and recall@5 for diagnosis and treatment (docs/MEDICAL.md), because the
net's hidden units catch feature combinations a linear score cannot.

Training is AdamW on the mean summed binary cross-entropy in mini-batches, with dropout
after the hidden layer, stopped early on held-out patients (never the test split) and
rolled back to its best epoch. It is seeded inside a forked RNG, so a fit is
deterministic and leaves the process's random state alone. torch runs on the threads the
resource manager set; it is imported inside functions only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

import heirloom

if TYPE_CHECKING:
    import torch

    from heirloom_plugins.medical.linear import Rows

#: Epochs at most, and epochs without a better held-out loss before stopping.
EPOCHS = 200
PATIENCE = 10
BATCH = 64
LEARNING_RATE = 1e-3
SEED = 0
#: The state's tensor names, in the order of ``Net``'s fields.
TENSORS = ("net.w1", "net.b1", "net.w2", "net.b2")


@attrs.frozen
class Net:
    w1: torch.Tensor  # (features, hidden)
    b1: torch.Tensor  # (hidden,)
    w2: torch.Tensor  # (hidden, labels)
    b2: torch.Tensor  # (labels,)

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(zip(TENSORS, attrs.astuple(self, recurse=False), strict=True))

    def probabilities(self, rows: Rows) -> torch.Tensor:
        import torch

        hidden = torch.relu(rows.matrix @ self.w1 + self.b1)
        return torch.sigmoid(hidden @ self.w2 + self.b2)


@attrs.frozen
class Settings:
    """The net's configuration (``MultiLabelModel``'s ``net_*`` fields)."""

    hidden: int = 256
    dropout: float = 0.5
    weight_decay: float = 0.01


def net_from_state(state: heirloom.State, what: str, features: int, labels: int) -> Net:
    """The net stored in a model state whose net weight is above 0, refusing a missing or
    misshapen tensor by name (``what``: "state", "parent")."""
    first = state.tensors.get("net.w1")
    hidden = first.shape[1] if first is not None and first.dim() == 2 else 0
    expected = ((features, hidden), (hidden,), (hidden, labels), (labels,))
    found = []
    for name, shape in zip(TENSORS, expected, strict=True):
        tensor = state.tensors.get(name)
        if tensor is None:
            raise heirloom.HeirloomError(f"the {what} has a net weight but lacks the tensor {name!r}")
        if tuple(tensor.shape) != shape:
            raise heirloom.HeirloomError(
                f"the {what}'s tensor {name!r} has shape {tuple(tensor.shape)}, expected {shape} "
                f"({features} features, {labels} labels)"
            )
        found.append(tensor)
    return Net(*found)


def fit_net(
    train: torch.Tensor,
    targets: torch.Tensor,
    held: torch.Tensor,
    held_targets: torch.Tensor,
    settings: Settings,
) -> tuple[Net, int]:
    """The net fitted on dense ``train`` rows, stopped on ``held`` rows; and its best epoch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        layers = nn.Sequential(
            nn.Linear(train.shape[1], settings.hidden),
            nn.ReLU(),
            nn.Dropout(settings.dropout),
            nn.Linear(settings.hidden, targets.shape[1]),
        )
        optimizer = torch.optim.AdamW(layers.parameters(), lr=LEARNING_RATE, weight_decay=settings.weight_decay)
        best_loss, best_epoch, best = float("inf"), 0, layers.state_dict()
        for epoch in range(EPOCHS):
            layers.train()
            order = torch.randperm(len(train))
            for start in range(0, len(train), BATCH):
                batch = order[start : start + BATCH]
                optimizer.zero_grad()
                loss = F.binary_cross_entropy_with_logits(layers(train[batch]), targets[batch], reduction="sum")
                (loss / len(batch)).backward()
                optimizer.step()
            layers.eval()
            with torch.no_grad():
                held_loss = float(F.binary_cross_entropy_with_logits(layers(held), held_targets, reduction="sum"))
            if held_loss < best_loss:
                best_loss, best_epoch = held_loss, epoch
                best = {name: tensor.clone() for name, tensor in layers.state_dict().items()}
            elif epoch - best_epoch >= PATIENCE:
                break
    first, second = best["0.weight"], best["3.weight"]
    net = Net(first.t().contiguous(), best["0.bias"], second.t().contiguous(), best["3.bias"])
    return net, best_epoch
