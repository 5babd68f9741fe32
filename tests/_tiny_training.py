"""A tiny U-Net training run for the tests of training reruns and checkpoint loading (not a test module)."""

import torch

from tio2fiji.training import fit_unet


class TinyItems:
    """``n`` items (image, mask, valid) of 32×32 pixels, item ``i`` seeded by ``i``."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        img = torch.rand(1, 32, 32, generator=g)
        return img, (img > 0.5).float(), torch.ones(1, 32, 32)


def fit_tiny(run, **kw):
    """``fit_unet`` of a one-convolution network on 4 training and 2 validation items into ``run``."""
    torch.manual_seed(0)
    args = dict(epochs=1, batch_size=2, lr=1e-3, loss="dice+bce", seed=0, threads=1,
                model_config={"arch": "unet", "encoder": "tiny"})
    args.update(kw)
    return fit_unet(torch.nn.Conv2d(1, 1, 3, padding=1), TinyItems(4), TinyItems(2), run, **args)
