"""SEP-FA-VR: SEP-FA with SVRE-style variance reduction over the ensemble.

Chen et al., ICLR 2023 (Sec. 4, following Xiong et al., "Stochastic Variance Reduced Ensemble
Adversarial Attack", CVPR 2022). Each outer step computes every member's gradient g_k(x) and
their mean ḡ; M inner steps then each draw one member j and accumulate
g_j(x_inner) − g_j(x) + ḡ; the outer step moves along the sign of the accumulated direction.

Fixed fault of the reference scripts: the inner loop there used the class means of the LAST
checkpoint for every member; here member j is always paired with its own means μ_j.
"""

from typing import Any

import torch

from engine.attacks.base import EnsembleDescent, FeatureAlignment


class SEPFAVR(FeatureAlignment, EnsembleDescent):
    def __init__(self, *args: Any, inner_steps: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inner_steps = inner_steps

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.inner_steps == 0:  # no inner steps: plain ensemble descent (SEP-FA)
            return super().forward(images, targets)
        x0 = images
        x = images.clone()
        k = len(self.nets)
        for t in range(self.steps):
            alpha = self.step_size(t)
            grads = self.ensemble_grad(x, targets)
            mean = torch.stack(grads).mean(0)
            x_inner = x.clone()
            accumulated = torch.zeros_like(x)
            members = torch.randint(0, k, (self.inner_steps,), generator=self.generator).tolist()
            for j in members:
                # member j with its OWN class means (self.means[j] inside member_loss)
                accumulated += self.member_grad(j, x_inner, targets) - grads[j] + mean
                x_inner = self.step(x_inner, x0, accumulated, alpha)
            x = self.step(x, x0, accumulated, alpha)
            self.on_step(t + 1)
        return x
