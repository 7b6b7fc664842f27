"""Engine commands: ``sepguard protect`` and ``sepguard evaluate`` (no server needed).

The engine (and torch) is imported inside the commands so that the service commands and
``--help`` stay fast.
"""

import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

err = Console(stderr=True)
STAGE_NAMES = {
    "extract": "Extracting",
    "validate": "Checking images",
    "ingest": "Reading images",
    "train": "Training surrogate",
    "means": "Class means",
    "craft": "Crafting perturbations",
    "package": "Writing protected zip",
    "evaluate": "Training victims",
}


@contextmanager
def progress_bars() -> Iterator[Any]:
    """A progress callback that draws one bar per stage on stderr."""
    with Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as bars:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(STAGE_NAMES.get(stage, stage), total=total)
            bars.update(tasks[stage], completed=done, total=total)

        yield update


def fail(message: str) -> NoReturn:
    """One clear line on stderr and a non-zero exit."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def protect(
    source: Annotated[Path, typer.Argument(help="Dataset: zip, tar.gz or folder in class-folder layout.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Protected zip to write.")],
    preset: Annotated[str, typer.Option(help="fast | balanced | paper")] = "balanced",
    method: Annotated[str | None, typer.Option(help="sep-fa-vr | sep-fa | sep | single-fa | random")] = None,
    eps: Annotated[float | None, typer.Option(help="l-inf budget in 1/255 units (default 8).")] = None,
    alpha: Annotated[float | None, typer.Option(help="Step size in 1/255 units.")] = None,
    steps: Annotated[int | None, typer.Option(help="T: outer steps.")] = None,
    inner_steps: Annotated[int | None, typer.Option(help="M: variance-reduction inner steps.")] = None,
    checkpoints: Annotated[int | None, typer.Option(help="K: checkpoints in the ensemble.")] = None,
    arch: Annotated[
        str | None,
        typer.Option(help="Surrogate architecture; several joined by + share the checkpoints (resnet18+mobilenet)."),
    ] = None,
    width: Annotated[int | None, typer.Option(help="Surrogate base width (64 = full).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Surrogate training epochs.")] = None,
    resolution: Annotated[
        int | None,
        typer.Option(help="Working resolution R in px (default: chosen from the images, up to the preset's cap)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (repeatable on the same device).")] = None,
    class_pattern: Annotated[
        float | None,
        typer.Option(help="Opt-in, beyond SEP: a per-class pattern of this amplitude (1/255) inside eps, e.g. 4."),
    ] = None,
    output_format: Annotated[str | None, typer.Option(help="png (lossless) | keep (original format).")] = None,
    jpeg_quality: Annotated[int | None, typer.Option(help="JPEG quality with --output-format keep.")] = None,
    measure: Annotated[bool, typer.Option(help="Measure the protection on a held-out split.")] = False,
    skip_invalid: Annotated[bool, typer.Option(help="Skip and list unreadable files instead of failing.")] = False,
    workdir: Annotated[Path | None, typer.Option(help="Keep intermediate files here (resumable).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda (default: CUDA when present).")] = None,
) -> None:
    """Protect an image dataset: train a surrogate, craft SEP-FA perturbations, write a zip."""
    from engine.config import preset as make_config
    from engine.errors import DatasetError

    try:
        cfg = make_config(
            preset,
            method=method,
            eps=eps,
            alpha=alpha,
            steps=steps,
            inner_steps=inner_steps,
            checkpoints=checkpoints,
            arch=arch,
            width=width,
            epochs=epochs,
            resolution=resolution,
            seed=seed,
            output_format=output_format,
            jpeg_quality=jpeg_quality,
            class_pattern=class_pattern,
        )
    except (ValueError, TypeError) as exc:
        fail(str(exc))
    if not source.exists():
        fail(f"{source} does not exist")
    import torch

    from engine.protect import protect as run_protect

    try:
        with progress_bars() as bars:
            report = run_protect(
                source,
                output,
                cfg,
                workdir=workdir,
                progress=bars,
                skip_invalid=skip_invalid,
                measure=measure,
                device=torch.device(device) if device else None,
            )
    except (DatasetError, ValueError, OSError, RuntimeError) as exc:
        fail(str(exc))
    summary = report["dataset"]
    err.print(
        f"[green]protected[/green] {summary.get('num_images')} images -> {output} "
        f"(method {cfg.method}, eps {cfg.eps:g}/255, {sum(report['timings_seconds'].values()):.0f} s)"
    )
    err.print(f"working resolution {report['resolution']} px: {report['resolution_reason']}", highlight=False)
    if "evaluation" in report:
        print_evaluation(report["evaluation"])


def print_evaluation(result: dict) -> None:
    """The measured protection as a table: one row per victim, defence and seed; then any warning."""
    table = Table(title=f"Victim accuracy on {result['test_images']} clean test images (final epoch / best epoch)")
    for col in ("victim", "defense", "seed", "px", "trained on clean", "trained on protected"):
        table.add_column(col)
    for row in result["victims"]:
        table.add_row(
            row.get("victim", row.get("arch", "?")),
            row["defense"],
            str(row.get("seed", "")),
            str(row.get("resolution", "")),
            _acc_pair(row, "clean"),
            _acc_pair(row, "protected"),
        )
    Console().print(table)
    for means in result.get("by_resolution", []) if len(result.get("by_resolution", [])) > 1 else []:
        clean = f", trained on clean {means['mean_clean_acc']:.1%}" if "mean_clean_acc" in means else ""
        Console().print(f"at {means['resolution']} px: trained on protected {means['mean_protected_acc']:.1%}{clean}")
    for warning in result.get("warnings", []):
        Console().print(f"[yellow]warning:[/yellow] {warning}")


def _acc_pair(row: dict, kind: str) -> str:
    if row.get(f"{kind}_acc") is None:
        return "-"
    best = row.get(f"{kind}_best_acc")
    return f"{row[f'{kind}_acc']:.1%}" + ("" if best is None else f" / {best:.1%}")


def evaluate(
    train: Annotated[Path, typer.Option(help="Training set to test (e.g. the protected zip).")],
    test: Annotated[Path, typer.Option(help="Clean test set (zip/folder, same class names).")],
    victims: Annotated[
        str, typer.Option(help="Victims: 'held-out' (default), 'tuning' or victim names, comma-separated.")
    ] = "held-out",
    compare: Annotated[Path | None, typer.Option(help="Clean training set to compare with.")] = None,
    defense: Annotated[list[str] | None, typer.Option(help="grayscale | jpeg:Q (repeatable).")] = None,
    epochs: Annotated[int, typer.Option(help="Train every victim this many epochs (0: each its own).")] = 0,
    resolution: Annotated[int, typer.Option(help="R: the working resolution the set was protected at.")] = 32,
    victim_resolution: Annotated[
        list[str] | None,
        typer.Option(
            help="Sizes in px the victims train at (repeatable or comma-separated; "
            "default: R, plus 2R when the training images' median short side is at least 2R)."
        ),
    ] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; every victim trains once per seed.")] = "0",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda.")] = None,
) -> None:
    """Train victims on a (protected) set and report their accuracy on clean test images."""
    import torch

    from engine.dataset import load_working_set, open_dataset
    from engine.device import pick_device
    from engine.errors import DatasetError
    from engine.evaluate import EvalSettings, EvalSplits, compare_at_resolutions, parse_defense
    from engine.resolution import victim_resolutions

    try:
        for d in defense or []:
            parse_defense(d)
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
        chosen = parse_sizes(victim_resolution or [])
        settings = EvalSettings(victims=victims, epochs=epochs, seeds=seed_list, defenses=list(defense or []))
        settings.resolved()  # names every unknown victim before any data is read
        with tempfile.TemporaryDirectory(prefix="sepguard-eval-") as tmp, progress_bars() as bars:
            paths = {"train": train, "test": test, "compare": compare}
            indexes = {name: open_dataset(path, Path(tmp) / name) for name, path in paths.items() if path is not None}
            classes = indexes["train"].classes
            for name, index in indexes.items():
                if index.classes != classes:
                    raise ValueError(
                        f"the {name} set's classes {index.classes} differ from the training set's {classes}"
                    )
            settings.resolutions = tuple(chosen or victim_resolutions(resolution, indexes["train"].sizes()))
            why = "as given" if chosen else "R, and 2R when the training images' median short side is at least 2R"
            err.print(f"victims train at {', '.join(map(str, settings.resolutions))} px ({why})", highlight=False)

            def splits_at(r: int) -> EvalSplits:
                sets = {}
                for name, index in indexes.items():
                    images, labels = load_working_set(index, r)
                    sets[name] = (torch.from_numpy(images), torch.from_numpy(labels))
                return sets.get("compare"), sets["train"], sets["test"]

            result = compare_at_resolutions(splits_at, len(classes), settings, pick_device(device), bars)
    except (DatasetError, ValueError, OSError) as exc:
        fail(str(exc))
    print_evaluation(result)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2))
    else:
        json.dump(result, sys.stdout, indent=2)
        print()


def parse_sizes(values: list[str]) -> list[int]:
    """``["32,64", "128"]`` -> [32, 64, 128]; a clear error for anything but positive whole numbers."""
    sizes = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not all(size.isdigit() and int(size) >= 8 for size in sizes):
        raise ValueError(f"victim resolutions must be whole numbers of px (at least 8), got {', '.join(sizes)}")
    return list(dict.fromkeys(int(size) for size in sizes))


def register(cli: typer.Typer) -> None:
    """Add the engine commands to the root CLI."""
    cli.command()(protect)
    cli.command()(evaluate)
