"""A study's spec: a TOML grid of models x objectives x priors x seeds, expanded into jobs with stable ids.

    [study]
    name = "classes"
    models = ["efficientnet_lite0"]
    objectives = ["logit:0..99", "blocks.10:0..15"]   # A..B: every integer from A to B, both included
    priors = [
      "fourier",
      { name = "fourier", label = "fourier+statistics", statistics_prior_weight = 0.01 },
      { name = "gan_faces", options = { clip = 2.0 }, steps = 128 },
    ]
    seeds = [0, 1, 2]                                  # or "0..4"
    size = 224
    steps = 512
    # optional: batch, learning_rate, transforms, held_out_model, statistics_prior_weight, deadline

A job is one Visualize call. Its id hashes every setting the server sees (not the prior's
label, not the deadline), so the same job has the same id in every run of any spec.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from priorviz_client._exceptions import StudyError
from priorviz_client._requests import RenderOptions, _text_options

_RANGE = re.compile(r"(\d+)\.\.(\d+)")
_STUDY_KEYS = {
    "name",
    "models",
    "objectives",
    "priors",
    "seeds",
    "size",
    "steps",
    "batch",
    "learning_rate",
    "transforms",
    "held_out_model",
    "statistics_prior_weight",
    "deadline",
}
_PRIOR_KEYS = {"name", "label", "options", "steps", "learning_rate", "statistics_prior_weight"}


@dataclass(frozen=True)
class StudyJob:
    """One Visualize call of a study: what the server is asked, and the label of its prior setup."""

    label: str
    model: str
    objective: str
    prior: str
    prior_options: tuple[tuple[str, str], ...]
    seed: int
    size: int
    steps: int
    batch: int
    learning_rate: float | None
    transforms: bool
    held_out_model: str | None
    statistics_prior_weight: float | None

    def settings(self) -> dict[str, Any]:
        """Everything the server sees, as JSON-able values (the label is the study's, not the server's)."""
        settings = asdict(self)
        del settings["label"]
        settings["prior_options"] = dict(self.prior_options)
        return settings

    @classmethod
    def from_settings(cls, label: str, settings: Mapping[str, Any]) -> StudyJob:
        options = tuple(sorted(settings["prior_options"].items()))
        return cls(label=label, **{**settings, "prior_options": options})

    @cached_property
    def id(self) -> str:
        """A hash of the settings: equal settings, equal id, whatever the spec or the run."""
        canonical = json.dumps(self.settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def render_options(self) -> RenderOptions:
        options: RenderOptions = {
            "model": self.model,
            "seed": self.seed,
            "size": self.size,
            "steps": self.steps,
            "batch": self.batch,
            "transforms": self.transforms,
        }
        if self.learning_rate is not None:
            options["learning_rate"] = self.learning_rate
        if self.held_out_model is not None:
            options["held_out_model"] = self.held_out_model
        if self.statistics_prior_weight is not None:
            options["statistics_prior_weight"] = self.statistics_prior_weight
        return options


@dataclass(frozen=True)
class PriorSetup:
    """A prior with its options, and the settings it overrides, under a label unique in the study."""

    label: str
    name: str
    options: tuple[tuple[str, str], ...] = ()
    steps: int | None = None
    learning_rate: float | None = None
    statistics_prior_weight: float | None = None


@dataclass(frozen=True)
class StudySpec:
    name: str
    models: tuple[str, ...]
    objectives: tuple[str, ...]
    """With every ``A..B`` range expanded."""
    priors: tuple[PriorSetup, ...]
    seeds: tuple[int, ...]
    size: int
    steps: int
    batch: int = 1
    learning_rate: float | None = None
    transforms: bool = True
    held_out_model: str | None = None
    statistics_prior_weight: float | None = None
    deadline: float | None = None
    """Seconds after which the server stops one job (it then counts as failed)."""
    text: str = ""
    """The TOML it was read from, kept in the study's database."""

    def jobs(self) -> list[StudyJob]:
        """The grid, every prior of an objective and seed next to each other (so reports fill in evenly)."""
        jobs = [
            StudyJob(
                label=prior.label,
                model=model,
                objective=objective,
                prior=prior.name,
                prior_options=prior.options,
                seed=seed,
                size=self.size,
                steps=prior.steps or self.steps,
                batch=self.batch,
                learning_rate=prior.learning_rate if prior.learning_rate is not None else self.learning_rate,
                transforms=self.transforms,
                held_out_model=self.held_out_model,
                statistics_prior_weight=prior.statistics_prior_weight
                if prior.statistics_prior_weight is not None
                else self.statistics_prior_weight,
            )
            for model, objective, seed, prior in itertools.product(
                self.models, self.objectives, self.seeds, self.priors
            )
        ]
        seen: dict[str, StudyJob] = {}
        for job in jobs:
            if job.id in seen:
                raise StudyError(
                    f"study {self.name!r}: prior setups {seen[job.id].label!r} and {job.label!r} ask for the same "
                    f"job ({job.objective}, seed {job.seed}); give them different settings or keep one"
                )
            seen[job.id] = job
        return jobs


def expand_ranges(text: str) -> list[str]:
    """``logit:0..2`` -> ``logit:0``, ``logit:1``, ``logit:2``; several ranges give every combination."""
    parts = _RANGE.split(text)
    literals, bounds = parts[0::3], list(zip(parts[1::3], parts[2::3], strict=True))
    ranges = []
    for low, high in bounds:
        if int(low) > int(high):
            raise StudyError(f"objective {text!r}: range {low}..{high} runs backwards")
        ranges.append(range(int(low), int(high) + 1))
    expanded = []
    for numbers in itertools.product(*ranges):
        pieces = [literals[0]]
        for number, literal in zip(numbers, literals[1:], strict=True):
            pieces += [str(number), literal]
        expanded.append("".join(pieces))
    return expanded


def load_spec(path: Path) -> StudySpec:
    """Reads and checks a spec file; ``StudyError`` names the file and the offending key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise StudyError(f"cannot read the spec {path}: {error.strerror}") from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, source: str = "spec") -> StudySpec:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StudyError(f"{source}: not valid TOML: {error}") from None
    if set(document) != {"study"} or not isinstance(document["study"], dict):
        raise StudyError(f"{source}: expected a single [study] table, found {sorted(document) or 'nothing'}")
    table = _Table(document["study"], f"{source}: study")
    table.check_keys(_STUDY_KEYS)
    objectives = [expanded for text in table.strings("objectives") for expanded in expand_ranges(text)]
    priors = tuple(
        _prior_setup(entry, f"{table.where}.priors[{index}]")
        for index, entry in enumerate(table.nonempty_list("priors"))
    )
    labels = [prior.label for prior in priors]
    if len(set(labels)) != len(labels):
        raise StudyError(f"{table.where}.priors: labels must differ, got {labels}")
    return StudySpec(
        name=table.string("name"),
        models=tuple(dict.fromkeys(table.strings("models"))),
        objectives=tuple(dict.fromkeys(objectives)),
        priors=priors,
        seeds=tuple(dict.fromkeys(_seeds(table))),
        size=table.integer("size", minimum=1),
        steps=table.integer("steps", minimum=1),
        batch=table.integer("batch", minimum=1, default=1),
        learning_rate=table.number("learning_rate"),
        transforms=table.boolean("transforms", default=True),
        held_out_model=table.optional_string("held_out_model"),
        statistics_prior_weight=table.number("statistics_prior_weight"),
        deadline=table.number("deadline"),
        text=text,
    )


def _seeds(table: _Table) -> list[int]:
    value = table.get("seeds")
    if isinstance(value, str):
        match = _RANGE.fullmatch(value.strip())
        if match is None or int(match[1]) > int(match[2]):
            raise StudyError(f"{table.where}.seeds: expected a list of integers or a range such as '0..4'")
        return list(range(int(match[1]), int(match[2]) + 1))
    if not isinstance(value, list) or not value or not all(_is_int(seed) and seed >= 0 for seed in value):
        raise StudyError(f"{table.where}.seeds: expected a non-empty list of integers >= 0 or a range such as '0..4'")
    return value


def _prior_setup(entry: object, where: str) -> PriorSetup:
    if isinstance(entry, str) and entry:
        return PriorSetup(label=entry, name=entry)
    if not isinstance(entry, dict):
        raise StudyError(f"{where}: expected a prior name or a table such as {{ name = 'fourier', options = {{...}} }}")
    table = _Table(entry, where)
    table.check_keys(_PRIOR_KEYS)
    name = table.string("name")
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise StudyError(f"{where}.options: expected a table of option = value")
    return PriorSetup(
        label=table.optional_string("label") or name,
        name=name,
        options=tuple(sorted(_text_options(options).items())),
        steps=table.integer("steps", minimum=1, default=None),
        learning_rate=table.number("learning_rate"),
        statistics_prior_weight=table.number("statistics_prior_weight"),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_MISSING = object()


class _Table:
    """Typed reads from a TOML table, each failure naming where it is."""

    def __init__(self, values: dict[str, Any], where: str) -> None:
        self._values = values
        self.where = where

    def check_keys(self, known: set[str]) -> None:
        unknown = sorted(set(self._values) - known)
        if unknown:
            raise StudyError(f"{self.where}: unknown key(s) {unknown}; known: {sorted(known)}")

    def get(self, key: str, default: Any = _MISSING) -> Any:
        if key in self._values:
            return self._values[key]
        if default is _MISSING:
            raise StudyError(f"{self.where}.{key} is missing")
        return default

    def nonempty_list(self, key: str) -> Sequence[object]:
        value = self.get(key)
        if not isinstance(value, list) or not value:
            raise StudyError(f"{self.where}.{key}: expected a non-empty list")
        return value

    def strings(self, key: str) -> list[str]:
        values = self.nonempty_list(key)
        if not all(isinstance(value, str) and value.strip() for value in values):
            raise StudyError(f"{self.where}.{key}: expected a list of non-empty strings")
        return [str(value).strip() for value in values]

    def string(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value.strip():
            raise StudyError(f"{self.where}.{key}: expected a non-empty string")
        return value.strip()

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if key in self._values else None

    def integer(self, key: str, *, minimum: int, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not _is_int(value) or value < minimum:
            raise StudyError(f"{self.where}.{key}: expected an integer >= {minimum}, got {value!r}")
        return value

    def number(self, key: str) -> float | None:
        value = self.get(key, None)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise StudyError(f"{self.where}.{key}: expected a number >= 0, got {value!r}")
        return float(value)

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise StudyError(f"{self.where}.{key}: expected true or false, got {value!r}")
        return value
