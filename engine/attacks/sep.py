"""SEP: self-ensemble protection with a targeted cross-entropy loss.

Chen et al., "Self-Ensemble Protection: Training Checkpoints are Good Data Protectors",
ICLR 2023, Sec. 3: descend the mean cross-entropy towards the wrong class t over the
checkpoints of one training run.
"""

import torch
import torch.nn.functional as F

from engine.attacks.base import EnsembleDescent


class SEP(EnsembleDescent):
    def member_loss(self, k: int, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.nets[k](x).float(), targets, reduction="sum")
