"""ssl_kit's pieces inside your own plain PyTorch loop (no trainer, no recipe).

Views from a preset, a backbone, a projector head and the NT-Xent loss, trained for a few steps
on scikit-learn's digits, then a k-NN probe. Run: python examples/own_loop.py [--steps 30]
"""

import argparse

import torch

from ssl_kit.backbones import ConvNet, ConvNetConfig
from ssl_kit.data.sources import DigitsConfig, digits
from ssl_kit.data.presets import build_transform, preset_digits, preset_none
from ssl_kit.eval import knn_evaluate
from ssl_kit.losses import nt_xent
from ssl_kit.methods.heads import mlp
from ssl_kit.spec import ViewContext


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)

    train_set, test_set = digits(DigitsConfig(), "train"), digits(DigitsConfig(), "test")
    size, mean, std = 16, train_set.info.mean, train_set.info.std
    augment = build_transform(preset_digits(ViewContext("global", 0, size, (0.5, 1.0), channels=1)), mean, std)
    plain = build_transform(preset_none(ViewContext("global", 0, size, (1.0, 1.0), channels=1)), mean, std)

    backbone = ConvNet(ConvNetConfig(channels=[32, 64, 128], pool_after=[0, 1], output_grid=2, in_channels=1))
    projector = mlp(backbone.num_features, 256, 64)
    params = list(backbone.parameters()) + list(projector.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)

    for step in range(args.steps):
        idx = torch.randint(len(train_set), (128,))
        images = [train_set[int(i)]["image"] for i in idx]
        view1 = torch.stack([augment(x) for x in images])  # your own augmentation works just as well
        view2 = torch.stack([augment(x) for x in images])
        z = projector(backbone(torch.cat([view1, view2])))  # view-major: [view-1 rows; view-2 rows]
        loss = nt_xent(z, n_views=2, temperature=0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  loss {loss.item():.4f}")

    backbone.eval()
    with torch.no_grad():
        def features(dataset):
            x = torch.stack([plain(dataset[i]["image"]) for i in range(len(dataset))])
            return backbone(x), dataset.labels

        results = knn_evaluate(*features(train_set), *features(test_set), k=20, temperature=0.07)
    print(f"k-NN top-1 after {args.steps} steps: {results['knn_cosine_k20_t0.07_top1']:.2f}%")


if __name__ == "__main__":
    main()
