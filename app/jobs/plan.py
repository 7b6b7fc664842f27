"""The shape of a job's pipeline: which stages run, in what order, how much each weighs, and
how crafting is split into shards.

Torch-free on purpose: the API imports it (through ``app.jobs.dispatch``) to submit jobs.
"""

from typing import Any

from engine.config import ProtectConfig
from engine.methods import method
from engine.victim_catalogue import resolve

# Order of the stages. ``evaluate`` (only when the user asked to measure the protection)
# runs before ``package`` so that report.json in the zip carries the measured protection.
ALL_STAGES = ("ingest", "train", "means", "craft", "evaluate", "package")

TASK_NAMES = {
    "ingest": "sepguard.ingest",
    "train": "sepguard.train",
    "means": "sepguard.means",
    "craft": "sepguard.craft_shard",
    "evaluate": "sepguard.evaluate",
    "package": "sepguard.package",
    "finalize": "sepguard.finalize",
}

# Share of the run given to the stages whose cost does not scale with network passes.
INGEST_SHARE = 0.04
PACKAGE_SHARE = 0.08


def stage_order(params: dict[str, Any]) -> list[str]:
    """The stages a job runs, in order."""
    return [s for s in ALL_STAGES if s != "evaluate" or params.get("measure")]


def next_stage(params: dict[str, Any], done: set[str]) -> str | None:
    """The first stage not yet done, or None when the job is complete."""
    for stage in stage_order(params):
        if stage not in done:
            return stage
    return None


def _passes(params: dict[str, Any]) -> dict[str, float]:
    """Rough network passes per image of each stage, so progress tracks wall time."""
    cfg = ProtectConfig.from_dict(params)
    row = method(cfg.method)
    costs = {
        "train": float(cfg.epochs) if row.needs_surrogate else 0.0,
        "means": cfg.checkpoints * 0.35 if row.needs_means else 0.0,  # forward only
        "craft": float(row.passes_per_image(cfg.steps, cfg.checkpoints, cfg.inner_steps)) or 0.05,
    }
    if params.get("measure"):
        victims = resolve(str(params.get("eval_victims", "held-out")), int(params.get("eval_epochs", 0)))
        # a victim trained on clean and one on protected images, each about as costly per epoch
        # as the surrogate at R; a victim at r costs (r/R)^2 of that
        sizes = params.get("victim_resolutions") or []
        scale = sum((r / sizes[0]) ** 2 for r in sizes) if sizes else 1.0
        costs["evaluate"] = 2.0 * scale * sum(v.epochs for v in victims)
    return costs


def stage_weights(params: dict[str, Any]) -> dict[str, float]:
    """Fraction of the whole run taken by each stage (they sum to 1)."""
    costs = _passes(params)
    total = sum(costs.values())
    core = 1.0 - INGEST_SHARE - PACKAGE_SHARE
    weights = {"ingest": INGEST_SHARE, "package": PACKAGE_SHARE}
    for stage, cost in costs.items():
        weights[stage] = core * (cost / total if total > 0 else 1.0 / len(costs))
    return {s: weights[s] for s in stage_order(params)}


def progress_before(params: dict[str, Any], stage: str) -> float:
    """Overall progress when ``stage`` starts: the weights of every earlier stage."""
    weights = stage_weights(params)
    total = 0.0
    for s in stage_order(params):
        if s == stage:
            break
        total += weights[s]
    return total


def plan_shards(params: dict[str, Any], num_images: int) -> list[tuple[int, int]]:
    """Image ranges [start, stop) of the crafting shards of ``num_images`` images.

    The same ranges as ``engine.stages.plan_shards`` (which reads the job's index, and whose
    module loads torch): shards are whole multiples of the crafting batch, so sharded crafting
    sees exactly the batches (and random draws) of a single pass.
    """
    cfg = ProtectConfig.from_dict(params)
    size = max(cfg.craft_batch, (cfg.shard_size // cfg.craft_batch) * cfg.craft_batch)
    return [(lo, min(num_images, lo + size)) for lo in range(0, num_images, size)]


def task_id(job_id: str, stage: str, shard: int | None = None) -> str:
    """Deterministic task ids, so every task of a job can be revoked without storing their ids."""
    return f"{job_id}-{stage}" if shard is None else f"{job_id}-{stage}-{shard}"
