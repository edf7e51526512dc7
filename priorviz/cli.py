"""``priorviz-render``: render objectives under several priors in process and write a comparison.

The in-process counterpart of the service's Compare: no server needed, useful for docs and
for checking the engine on a new machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from priors import PriorKind, list_priors
from priors.base import prior_info
from priorviz.images import Cell, contact_sheet, to_pil
from priorviz.models import LOGITS, default_model_name, get_model
from priorviz.objectives import ClassLogit, ClassProbability, Objective, parse_objective
from priorviz.render import RenderConfig, StepEvent, render

DEFAULT_OBJECTIVES = ("logit:130", "logit:1", "blocks.10:17")


def class_index(objective: Objective) -> int | None:
    """The class a single-class objective targets, else None."""
    return objective.index if isinstance(objective, ClassLogit | ClassProbability) else None


def default_priors() -> list[str]:
    """``fourier`` plus every learned prior installed here."""
    return ["fourier"] + [info.name for info in list_priors() if info.kind is PriorKind.LEARNED]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="priorviz-render", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=default_model_name())
    parser.add_argument(
        "--objective", action="append", help=f"objective text, repeatable (default: {', '.join(DEFAULT_OBJECTIVES)})"
    )
    parser.add_argument("--prior", action="append", help="prior name, repeatable (default: fourier + learned priors)")
    parser.add_argument("--steps", type=int, default=None, help="optimization steps (default: each prior's own)")
    parser.add_argument("--size", type=int, default=None, help="image side (default: the model's input size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("out/render"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    objectives = [parse_objective(text) for text in (args.objective or DEFAULT_OBJECTIVES)]
    priors = args.prior or default_priors()
    model = get_model(args.model, device=args.device)
    for objective in objectives:
        for term in objective.layers() - {LOGITS}:
            model.check_module(term)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[list[Cell]] = []
    summary = []
    for objective in objectives:
        row = []
        for prior in priors:

            def report(event: StepEvent, label: str = f"{objective} / {prior}") -> None:
                if event.step % 64 == 0 or event.step == event.total_steps:
                    print(
                        f"{label}: step {event.step}/{event.total_steps} value {event.values.mean():.3f}",
                        file=sys.stderr,
                    )

            steps = args.steps or prior_info(prior).default_steps
            result = render(
                model,
                objective,
                prior,
                size=args.size,
                config=RenderConfig(steps=steps, seed=args.seed),
                progress=report,
            )
            index = class_index(objective)
            caption = f"value {result.values.item():.2f}"
            entry = {
                "objective": objective.to_text(),
                "prior": prior,
                "value": result.values.item(),
                "steps": steps,
                "seconds": round(result.seconds, 2),
            }
            if index is not None:
                probability = model.predict(result.images)[0, index].item()
                caption += f"\np({model.class_names[index]}) {probability:.3f}"
                entry["probability"] = probability
            name = f"{objective.to_text().replace(':', '_').replace(' ', '')}__{prior}.png"
            to_pil(result.images[0]).save(args.out / name)
            entry["image"] = name
            summary.append(entry)
            row.append(Cell(result.images[0], caption))
        rows.append(row)
    titles = [
        f"{o}" + (f" ({model.class_names[index]})" if (index := class_index(o)) is not None else "") for o in objectives
    ]
    contact_sheet(rows, titles, priors).save(args.out / "contact_sheet.png")
    (args.out / "summary.json").write_text(
        json.dumps({"model": model.name, "seed": args.seed, "results": summary}, indent=2)
    )
    print(f"wrote {args.out / 'contact_sheet.png'} and {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
