"""SEP-FA: self-ensemble protection with feature alignment (Chen et al., ICLR 2023, Sec. 4).

Loss = mean over checkpoints of ‖f_k(x+δ) − μ_k[t]‖²: every image's penultimate feature is
pulled to the class mean of a wrong class, in every checkpoint. ``single-fa`` is the same
attack with only the last checkpoint (the single-model baseline).
"""

from engine.attacks.base import EnsembleDescent, FeatureAlignment


class SEPFA(FeatureAlignment, EnsembleDescent):
    pass
