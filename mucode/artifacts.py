"""Atomic writes, content hashes and stage manifests: nothing half-written is ever taken as done.

Every artifact is written beside its final path (a hidden `.tmp-*` sibling) and renamed into place,
so a killed process or a full disk leaves either the old artifact or none. A stage is complete only
when its `manifest.json` exists and says so; `manifest.json` is always the last file a stage writes.

    with atomic_dir("runs/x/rollouts") as tmp:      # build the folder under tmp, renamed on success
        ...
    atomic_write_json("runs/x/summary.json", {...})
    done = read_manifest("runs/x/iter1/sft")         # None unless the stage completed
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mucode.tracking import MetricLogger

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


_UMASK = os.umask(0)
os.umask(_UMASK)


def _tmp_sibling(path: Path, is_dir: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    make = tempfile.mkdtemp if is_dir else tempfile.mkstemp
    made = make(prefix=f".tmp-{path.name}-", dir=path.parent)
    if not is_dir:
        os.close(made[0])
        made = made[1]
    # mkstemp/mkdtemp make private (0600/0700) entries; the artifact gets the usual umask mode.
    os.chmod(made, (0o777 if is_dir else 0o666) & ~_UMASK)
    return Path(made)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces `path` whole, on error it is removed."""
    path = Path(path)
    tmp = _tmp_sibling(path, is_dir=True)
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists():
            old = _tmp_sibling(path, is_dir=True)
            old.rmdir()
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` so readers see the old file or the new one, never a part."""
    path = Path(path)
    tmp = _tmp_sibling(path, is_dir=False)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomic UTF-8 text write."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _config_node(config: Any, exclude: tuple[str, ...]):
    from omegaconf import OmegaConf

    node = OmegaConf.structured(config)
    if exclude:
        node = OmegaConf.create({k: v for k, v in node.items_ex(resolve=False) if k not in exclude})
    return node


def config_values(config: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """A stage's dataclass config as plain values (enums by name, as Hydra reads them back), without the
    top-level fields in `exclude`: what config.yaml, the manifest and the tracker hold."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(_config_node(config, exclude), enum_to_str=True)


def write_config(out_dir: str | Path, config: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Save a stage's resolved dataclass config as out_dir/config.yaml (without the top-level fields in
    `exclude`) and return it as config_values does."""
    from omegaconf import OmegaConf

    node = _config_node(config, exclude)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out_dir) / "config.yaml", OmegaConf.to_yaml(node))
    return OmegaConf.to_container(node, enum_to_str=True)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomic JSON write (dataclasses are converted; keys keep their order; an undefined metric,
    NaN or infinite, is written as null so that strict JSON readers accept the file)."""
    return atomic_write_text(path, json.dumps(_plain(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def content_hash(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (names and bytes, sorted), as 16 hex digits."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{path}: nothing to hash (missing or empty)")
    for p in files:
        h.update(str(p.relative_to(path) if p != path else p.name).encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def write_manifest(stage_dir: str | Path, inputs: dict[str, str | Path], outputs: list[str],
                   metrics: dict[str, Any] | None = None, seconds: float | None = None,
                   config: dict[str, Any] | None = None) -> Path:
    """Mark a stage complete: hashes of its inputs, its outputs, metrics, wall time and the resolved
    config it ran with (what a rerun is checked against)."""
    stage_dir = Path(stage_dir)
    for name in outputs:
        if not (stage_dir / name).exists():
            raise FileNotFoundError(f"{stage_dir / name}: stage output missing, not marking complete")
    manifest = {
        "complete": True,
        "inputs": {k: {"path": str(p), "hash": content_hash(p)} for k, p in inputs.items()},
        "outputs": outputs,
        "metrics": metrics or {},
        "seconds": seconds,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"config": config} if config is not None else {}),
    }
    return atomic_write_json(stage_dir / MANIFEST, manifest)


def read_manifest(stage_dir: str | Path) -> dict | None:
    """The stage's manifest if the stage completed, else None."""
    p = Path(stage_dir) / MANIFEST
    if not p.is_file():
        return None
    manifest = json.loads(p.read_text())
    return manifest if manifest.get("complete") else None


@dataclasses.dataclass
class StageOutput:
    """What a stage's body made: the inputs it read (hashed into the manifest), the outputs it wrote
    (names inside the stage folder, checked to exist) and its metrics."""

    inputs: dict[str, str | Path]
    outputs: list[str]
    metrics: dict[str, Any]


# Config fields that do not change what a stage computes: a complete stage is not rerun for them.
UNCHECKED = ("tracking", "log_every", "checkpoint_every", "keep_checkpoints", "workers", "verifier_batch_size")


def run_stage(out_dir: str | Path, config: Any, body: Callable[[MetricLogger], StageOutput],
              main_process: bool = True, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The skeleton every stage shares: skip when complete, time, run, log, write config.yaml and the manifest.

    Returns the stage's metrics as its manifest holds them (an undefined metric, NaN, as None), so a
    run and a rerun that skips return the same. A complete stage is skipped only if it would compute
    the same thing: its config (but for the UNCHECKED fields) and the contents of its inputs must be
    those its manifest records, else it stops with one line saying what changed (check_unchanged).
    Other ranks of a distributed stage run `body` but write nothing. config.yaml is written once the
    body succeeded (a stage whose inputs are missing leaves no folder behind), right before the
    manifest. `exclude`: config fields left out of config.yaml (where the process runs, not what the
    stage computes, e.g. a rollout shard).

    Tracking: `body` gets the stage's logger (out_dir/metrics.jsonl + wandb, from `config.tracking`,
    named by the folder's path in `config.run_dir`), which a training loop logs its steps with; the
    body's metrics are then logged as the stage's final row (tracking.flat_metrics).
    """
    from mucode.tracking import flat_metrics, open_logger  # imported here: tracking imports this module

    out_dir = Path(out_dir)
    if (manifest := read_manifest(out_dir)) is not None:
        check_unchanged(out_dir, manifest, config_values(config, exclude))
        log.info("%s complete; skipping", out_dir)
        return manifest["metrics"]
    start = time.perf_counter()
    stage = RunLayout(config.run_dir).stage_name(out_dir)
    with open_logger(config.tracking, out_dir, stage, config_values(config, exclude), main_process) as logger:
        done = body(logger)
        if final := flat_metrics(done.metrics):
            logger.log(final)
    if not main_process:
        return done.metrics
    settings = write_config(out_dir, config, exclude=exclude)
    write_manifest(out_dir, done.inputs, done.outputs, done.metrics, time.perf_counter() - start, settings)
    return read_manifest(out_dir)["metrics"]


@dataclasses.dataclass
class StageFolder:
    """One folder of a stage that writes several (prepare: problems/ and base/; evaluate: one per task):
    the config it is built from, the fields of it in `exclude` (left out of its config.yaml and of the
    rerun check), and the body that computes it."""

    path: Path
    config: Any
    exclude: tuple[str, ...]
    body: Callable[[], StageOutput]

    def run(self) -> dict[str, Any]:
        return run_stage(self.path, self.config, lambda logger: self.body(), exclude=self.exclude)


def check_unchanged(out_dir: Path, manifest: dict, config: dict[str, Any]) -> None:
    """Fail with one line if a complete stage would now run with another config or other inputs.

    Manifests written before configs were recorded are not checked against a config; fields added to a
    stage's config since its manifest was written are not compared (new options default to the old
    behaviour).
    """
    changed = []
    if "config" in manifest:
        old, new = leaves(manifest["config"]), leaves(config)
        # a field the manifest lacks was added to mucode after the stage ran, at a default that keeps
        # what it computed: not a change
        changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in old
                   if old.get(k) != new.get(k) and not any(part in UNCHECKED for part in k.split("."))]
    for name, recorded in manifest["inputs"].items():
        path = Path(recorded["path"])
        try:
            now = content_hash(path)
        except FileNotFoundError:
            now = None
        if now != recorded["hash"]:
            changed.append(f"input {name} ({path}) {'changed' if now else 'is gone'}")
    if changed:
        raise ValueError(f"{out_dir}: complete, but it would now run with {'; '.join(changed[:4])}"
                         f"{' and more' if len(changed) > 4 else ''}; to recompute it delete the folder (and those "
                         "of the stages after it), or use another run_dir")


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of a plain config (lists are values)."""
    if isinstance(node, dict):
        return {k: v for key, child in node.items() for k, v in leaves(child, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def require(path: str | Path, what: str, produced_by: str) -> Path:
    """Fail with one line if an input artifact is missing: what it is and which stage makes it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found; run {produced_by} first or point to it")
    return path


MODEL = "model"
"""The `save_pretrained` folder inside a training stage's folder (and the base stage's)."""


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """Every folder of a run, and the only place that spells them out.

    Iteration i (1..M) holds the rollouts of generator i-1, the verifier trained on all rollouts so
    far, the relabeled data and generator i. Generators are named "base" (generator 0) and "iter{i}";
    their evaluations on the run's own task live in eval/<name>, those on another task (eval.tasks) in
    eval-<task>/<name>, whose problems prepare writes to problems-<task>/.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def problems(self, split: str | None = None, task: str | None = None) -> Path:
        """The problems stage folder of the run's task (task=None) or of another evaluation task, or one
        split's Problem dataset in it."""
        folder = self.root / ("problems" if task is None else f"problems-{task}")
        return folder if split is None else folder / split

    @property
    def base(self) -> Path:
        """The tiny base model as built (untrained), when the base is the tiny default."""
        return self.root / "base"

    @property
    def warmup(self) -> Path:
        """Warm start: SFT of the tiny base on the warm-up references (generator 0)."""
        return self.root / "warmup"

    def iteration(self, i: int) -> Path:
        return self.root / f"iter{i}"

    def rollouts(self, i: int) -> Path:
        return self.iteration(i) / "rollouts"

    def verifier(self, i: int) -> Path:
        return self.iteration(i) / "verifier"

    def relabel(self, i: int) -> Path:
        return self.iteration(i) / "relabel"

    def sft(self, i: int) -> Path:
        return self.iteration(i) / "sft"

    @property
    def final_verifier(self) -> Path:
        """The verifier trained on every rollout, including generator M's (final_rollouts=true)."""
        return self.root / "final_verifier"

    def eval(self, name: str, task: str | None = None) -> Path:
        """The evaluation of generator `name` (base, iter1, ...) or of any named model, on the run's own
        task (task=None) or on another one."""
        return self._evals(task) / name

    def _evals(self, task: str | None) -> Path:
        return self.root / ("eval" if task is None else f"eval-{task}")

    def eval_tasks(self) -> list[str]:
        """The other tasks the run has evaluation folders for (eval-<task>/), sorted."""
        return sorted(p.name.removeprefix("eval-") for p in self.root.glob("eval-*") if p.is_dir())

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def summary(self) -> Path:
        """The report's summary.json (report.md and the *.png plots sit beside it)."""
        return self.root / "summary.json"

    @property
    def clock(self) -> Path:
        """The main job's wall clock across resumed invocations: {"wall_seconds": s}."""
        return self.root / "driver.json"

    def stage_name(self, stage_dir: str | Path) -> str:
        """A stage folder's name in metrics and logs: its path inside the run ("iter1/verifier"), or
        its own name when it lies elsewhere."""
        out, run = Path(stage_dir).resolve(), self.root.resolve()
        return str(out.relative_to(run)) if out.is_relative_to(run) else out.name

    @staticmethod
    def model(stage_dir: str | Path) -> Path:
        """The model folder a training stage writes."""
        return Path(stage_dir) / MODEL

    @staticmethod
    def generator_name(i: int) -> str:
        """Generator i's name: "base" for 0, "iter{i}" after."""
        return "base" if i == 0 else f"iter{i}"

    @staticmethod
    def generator_index(name: str) -> int | None:
        """The inverse of generator_name; None for a name that is not a run generator."""
        if name == "base":
            return 0
        found = re.fullmatch(r"iter([1-9]\d*)", name)
        return int(found.group(1)) if found else None

    def generator(self, i: int, base: str) -> str:
        """Generator i: 1..M are SFT outputs; 0 is the warm start when the base is the tiny model,
        otherwise the base model itself (`base` = model.name_or_path), a name that the stages resolve to
        the folder they load with models.resolve_path ("smollm2" is the converted offline copy)."""
        if i > 0:
            return str(self.model(self.sft(i)))
        return str(self.model(self.warmup)) if base == "tiny" else base

    def iterations(self) -> list[int]:
        """The iterations present in the run (iter{i} folders), ascending."""
        found = (re.fullmatch(r"iter([1-9]\d*)", p.name) for p in self.root.glob("iter*") if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def evaluations(self, task: str | None = None) -> list[str]:
        """The names with an evaluation folder on the run's task (or on `task`): generators in order
        (base, iter1, ...), then the rest."""
        names = [p.name for p in self._evals(task).glob("*") if p.is_dir()]

        def order(name: str) -> tuple:
            i = self.generator_index(name)
            return (0, i, "") if i is not None else (1, 0, name)

        return sorted(names, key=order)

    def last_generator(self) -> int:
        """The highest i whose generator SFT is complete (0 when none is)."""
        done = [i for i in self.iterations() if read_manifest(self.sft(i)) is not None]
        return max(done, default=0)

    def final_verifier_stage(self) -> Path | None:
        """The run's final verifier stage: final_verifier/ when complete, else the last complete
        iter{i}/verifier, else None."""
        if read_manifest(self.final_verifier) is not None:
            return self.final_verifier
        done = [i for i in self.iterations() if read_manifest(self.verifier(i)) is not None]
        return self.verifier(max(done)) if done else None
