"""Victims trained on the protected images of an already crafted job folder, tested on clean ones.

Re-measures a perturbation without crafting it again: a job folder kept by ``sepguard protect
--workdir``, by the service, or copied out of a ``bench.efficacy`` run. The victims of each seed
run as their own process, so on a machine with spare cores several seeds (or victim sets) can
be measured side by side.

    python -m bench.victims_on_job JOB_DIR --seed 0 --set ce_weight=4 --label ce4 --append-to efficacy-round5

``--set`` rebuilds the crafting config (only ``shard_size``, ``eps`` and ``resolution`` matter for
reading δ back; an auto resolution is chosen from the job's index, as ingest chose it). With
``--append-to NAME`` the row joins ``bench/results/NAME-seed<S>.json`` and the summary ``NAME.md``
is rebuilt, so the row sits beside the ones ``bench.efficacy`` measured on the same surrogate;
otherwise the result goes to ``victims-on-job-seed<S>``.
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch

from bench.common import RESULTS, SHARED_DATA, recorded_args, write_result
from bench.efficacy import parse_fields, save_seed, summarise
from engine import stages
from engine.attacks import passes_per_image
from engine.config import preset
from engine.dataset import load_working_set, open_dataset
from engine.device import pick_device
from engine.evaluate import EvalSettings, compare_victims
from engine.job_dir import JobDir
from engine.resolution import resolve_resolution


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("job", type=Path, help="job folder with working.npz and shards/")
    ap.add_argument("--test", type=Path, default=SHARED_DATA / "cifar10-mini" / "test.zip")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--set", action="append", default=[], help="field=value of the crafting config")
    ap.add_argument("--seed", type=int, default=0, help="the victims' seed (use the crafting run's seed)")
    ap.add_argument("--victims", default="held-out")
    ap.add_argument("--epochs", type=int, default=0, help="> 0: every victim trains this long (quick checks)")
    ap.add_argument("--label", default="job", help="the row's name in the result")
    ap.add_argument("--append-to", default="", help="an efficacy result name whose seed file gets this row")
    args = ap.parse_args()

    changes = parse_fields(args.preset, args.set)
    device = pick_device()
    job = JobDir(args.job)
    cfg = resolve_resolution(preset(args.preset, seed=args.seed, **changes), job.load_index().sizes())
    images, labels = stages.load_working(job)
    delta = torch.from_numpy(stages.load_delta(job, cfg))
    protected = stages.apply_delta_working(images, delta, cfg.eps)
    with tempfile.TemporaryDirectory(prefix="sepguard-bench-") as tmp:
        test_index = open_dataset(args.test, Path(tmp) / "test")
        test = tuple(torch.from_numpy(a) for a in load_working_set(test_index, cfg.resolution))
    num_classes = int(labels.max()) + 1
    settings = EvalSettings(victims=args.victims, epochs=args.epochs, seeds=(args.seed,))
    res = compare_victims(None, (protected, labels), test, num_classes, settings, device)
    row = {
        "row": args.label,
        "changes": changes,
        "passes_per_image": passes_per_image(cfg, cfg.checkpoints),
        "victims": res["victims"],
        "measured_by": "bench.victims_on_job",
    }
    if args.append_to:
        seed_file = RESULTS / f"{args.append_to}-seed{args.seed}.json"
        data = json.loads(seed_file.read_text())
        data["rows"] = [r for r in data["rows"] if r["row"] != args.label] + [row]
        save_seed(args.append_to, args.seed, data)
        print(summarise(args.append_to))
    else:
        out = {"args": recorded_args(args), "seed": args.seed, "rows": [row]}
        lines = [f"| {v['victim']} | {v['protected_acc']:.1%} |" for v in res["victims"]]
        write_result(f"victims-on-job-seed{args.seed}", out, "| victim | accuracy |\n|---|---|\n" + "\n".join(lines))
        print("\n".join(lines))


if __name__ == "__main__":
    main()
