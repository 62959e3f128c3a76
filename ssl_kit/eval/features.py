"""Feature extraction shared by feature evaluators: frozen model, eval mode, no augmentation,
sharded over processes and gathered; and the choice of which features (``eval.features``)."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from ssl_kit.errors import UserError


class _Transformed(torch.utils.data.Dataset):
    def __init__(self, dataset: Any, transform: Callable, indices: list[int]) -> None:
        self.dataset, self.transform, self.indices = dataset, transform, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        item = self.dataset[self.indices[i]]
        return self.transform(item["image"]), int(item.get("label", -1))


@torch.no_grad()
def extract_features(
    encoder: nn.Module | None,
    dataset: Any,
    transform: Callable,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, D) float32 on the CPU and labels (N,) (-1 where unlabelled), in dataset order.

    ``encoder=None`` returns the flattened transformed pixels (the "raw pixels" baseline). The
    encoder is put in eval mode for the pass and restored to its previous mode afterwards. With
    ``world_size > 1`` every process extracts one contiguous shard (the last one padded by
    repeating its final index) and ``gather`` (e.g. ``accelerator.gather``: concatenation over
    processes in rank order) assembles the whole set on every process.
    """
    n = len(dataset)
    shard = math.ceil(n / world_size)
    indices = list(range(rank * shard, min(n, (rank + 1) * shard)))
    indices += [indices[-1] if indices else n - 1] * (shard - len(indices))
    loader = torch.utils.data.DataLoader(
        _Transformed(dataset, transform, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    was_training = encoder.training if encoder is not None else False
    if encoder is not None:
        encoder.eval()
    features, labels = [], []
    try:
        for images, y in loader:
            if encoder is None:
                f = images.flatten(1)
            else:
                f = encoder(images.to(device)).float().flatten(1)
            features.append(f.to(device))
            labels.append(y.to(device))
    finally:
        if encoder is not None:
            encoder.train(was_training)
    f, y = torch.cat(features), torch.cat(labels)
    if world_size > 1:
        if gather is None:
            raise ValueError("extract_features: world_size > 1 needs a gather function")
        f, y = gather(f.contiguous()), gather(y.contiguous())
    return f[:n].cpu(), y[:n].cpu()


def feature_module(method: nn.Module, choice: str = "encoder") -> nn.Module:
    """The module whose outputs the evaluators see (``eval.features``).

    ``"encoder"``: ``method.encoder()`` (the method's choice: the backbone, an EMA target, ...);
    ``"backbone"``: the online backbone; ``"<head>"`` or ``"<head>.<k>"``: the backbone followed by
    the method's head module ``<head>`` (e.g. ``projector``), whole or up to and including layer
    ``k`` of a sequential head (Decoupled Uniformity evaluates ``projector.0``).
    """
    if choice == "encoder":
        return method.encoder()
    if choice == "backbone":
        return method.backbone
    name, _, layer = choice.partition(".")
    heads = [n for n, m in method.named_children() if n != "backbone"]
    head = getattr(method, name, None) if name in heads else None
    if not isinstance(head, nn.Module):
        raise UserError(
            f"[eval] features = '{choice}': the method has no head '{name}'; allowed: encoder, backbone, "
            + ", ".join(heads)
        )
    if layer:
        if not isinstance(head, nn.Sequential) or not layer.isdigit() or int(layer) >= len(head):
            size = len(head) if isinstance(head, nn.Sequential) else 0
            raise UserError(
                f"[eval] features = '{choice}': '{name}' " + (f"has layers 0..{size - 1}" if size else "is not sequential")
            )
        head = head[: int(layer) + 1]
    return nn.Sequential(method.backbone, head)
