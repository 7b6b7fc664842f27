"""An opt-in class-consistent component: one small synthetic pattern per class, added under SEP.

Beyond SEP (an addition of this project, not of the paper). Sample-wise poisons such as SEP work
when the victim learns the perturbation's features before the images' own; victims trained long
or with another recipe learn the images anyway. A pattern that is the same for every image of a
class is the easiest feature of all to learn (Yu et al., "Availability Attacks Create Shortcuts",
KDD 2022, show that linearly separable class-wise noise is what makes poisons work), so it takes
effect exactly where sample-wise δ is weakest.

The pattern of class c is one small random colour tile (``tile`` pixels square, ±A per pixel and
channel, drawn from the seed) repeated over the whole image. Repetition is what lets the victim
learn it: a random crop or flip of the image still shows the same tile (shifted or mirrored), and a
convolution sees it everywhere. It takes A of the ε budget and SEP crafts in the remaining ε − A
around the patterned image. Grayscale training averages the three channels and so keeps only part
of it; JPEG re-compression removes most of its high frequencies.
"""

import torch


def class_patterns(num_classes: int, resolution: int, amplitude: float, seed: int, tile: int = 0) -> torch.Tensor:
    """(C, 3, R, R) patterns in image units (±amplitude/255); ``tile`` 0 means R // 8 pixels."""
    tile = tile or max(2, resolution // 8)
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    tiles = torch.randint(0, 2, (num_classes, 3, tile, tile), generator=gen).float() * 2 - 1
    reps = -(-resolution // tile)
    return tiles.repeat(1, 1, reps, reps)[..., :resolution, :resolution] * (amplitude / 255)
