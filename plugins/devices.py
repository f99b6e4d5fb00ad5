"""The device a torch component computes on: its resource manager's ``device_for`` answer, checked against what torch
in this process can use. Shared by the text and encoder plugins.

A manager may answer ``cuda:0`` on a host without CUDA (docs/PLUGINS.md asks it to answer only a device present): the
model's start then failed deep in its first tensor, after the training data was read, as the model plugin's
``AssertionError: Torch not compiled with CUDA enabled`` (checker h341 F3). Now its start fails at once, naming the
manager, the device it answered and what torch here sees."""

from __future__ import annotations

import re

import heirloom

_DEVICE = re.compile(r"cpu|cuda:\d+")


def device_for(ctx: heirloom.Context) -> str:
    """``ctx.resources.device_for(ctx.name)``: ``cpu`` or a ``cuda:N`` torch here has, else a HeirloomError naming
    the resource manager (its type, plugin, distribution and version)."""
    device = ctx.resources.device_for(ctx.name)
    answered = f"{heirloom.manager_name(ctx.resources)}: device_for({ctx.name!r}) returned {device!r}"
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise heirloom.HeirloomError(f"the resource manager {answered}; it must be 'cpu' or 'cuda:N'")
    if device != "cpu":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(device.partition(":")[2]) >= count:
            seen = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise heirloom.HeirloomError(
                f"the resource manager {answered}, but torch {torch.__version__} here sees {seen}: a manager "
                "answers only a device present (check it in check_profile, for profile check)"
            )
    return device
