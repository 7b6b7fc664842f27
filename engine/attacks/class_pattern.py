"""An opt-in class-consistent component: one small synthetic pattern per class, added under SEP.

Beyond SEP (an addition of this project, not of the paper). Sample-wise poisons such as SEP work
when the victim learns the perturbation's features before the images' own; victims trained long
or with another recipe learn the images anyway. A pattern that is the same for every image of a
class is the easiest feature of all to learn (Yu et al., "Availability Attacks Create Shortcuts",
KDD 2022, show that linearly separable class-wise noise is what makes poisons work), so it takes
effect exactly where sample-wise δ is weakest. It is drawn in luminance (equal on the three
channels), so grayscale training keeps it; JPEG re-compression blurs its block edges.

The pattern of class c is a grid of ±A blocks (``block`` pixels square) drawn from the seed; it takes
A of the ε budget and SEP crafts in the remaining ε − A around the patterned image.
"""

import torch


def class_patterns(num_classes: int, resolution: int, amplitude: float, seed: int, block: int = 0) -> torch.Tensor:
    """(C, 1, R, R) patterns in image units (±amplitude/255); ``block`` 0 means R // 8 pixels."""
    block = block or max(1, resolution // 8)
    cells = -(-resolution // block)
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    signs = torch.randint(0, 2, (num_classes, 1, cells, cells), generator=gen).float() * 2 - 1
    grid = signs.repeat_interleave(block, 2).repeat_interleave(block, 3)[..., :resolution, :resolution]
    return grid * (amplitude / 255)
