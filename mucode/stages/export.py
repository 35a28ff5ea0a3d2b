"""Stage export: a run's generator and/or verifier as Hub-ready folders with model cards; optional push.

    python pipelines/export.py run_dir=runs/default                        # folders in runs/default/export
    python pipelines/export.py run_dir=runs/x which=generator iteration=2 \
        generator_repo_id=me/mucode-gen push=true dry_run=true              # list what would be uploaded
    HF_TOKEN=hf_... python pipelines/export.py run_dir=runs/x push=true \
        generator_repo_id=me/mucode-gen verifier_repo_id=me/mucode-verifier

Reads the run's model folders (the last complete iteration of each unless `iteration=`), their
resolved config.yaml and the run's summary.json (the report stage); writes out_dir/generator and
out_dir/verifier (safetensors, tokenizer, README.md model card; see mucode/export.py). The Hub
token comes from $HF_TOKEN only; `dry_run=true` builds the folders and lists the files, sizes and
target repos without touching the network. CPU is enough; the model must fit in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Optional

from mucode.artifacts import RunLayout
from mucode.export import GENERATOR, VERIFIER, RunFacts, Upload, hub_token, locate, push, upload_plan, write_folder
from mucode.report import Summary

log = logging.getLogger(__name__)


class ExportWhich(str, Enum):
    """Which models to export."""

    generator = "generator"
    verifier = "verifier"
    both = "both"


@dataclass
class ExportConfig:
    """Stage: Hub-ready folders with model cards for a run's generator and/or verifier."""

    run_dir: str = "runs/default"
    """The run to export (needs summary.json from the report stage)."""
    which: ExportWhich = ExportWhich.both
    """generator, verifier or both."""
    iteration: Optional[int] = None
    """Iteration to export (0 = the warm-start generator); null = the last complete one of each."""
    out_dir: Optional[str] = None
    """Where the folders generator/ and verifier/ are written; null = run_dir/export."""
    generator_repo_id: Optional[str] = None
    """Hub repo for the generator ("user/name"); needed to push it."""
    verifier_repo_id: Optional[str] = None
    """Hub repo for the verifier; needed to push it."""
    license: Optional[str] = None
    """License in the cards; null = apache-2.0 for the tiny/SmolLM2 bases, "other" otherwise."""
    push: bool = False
    """Upload the folders to the Hub (token from $HF_TOKEN)."""
    dry_run: bool = False
    """List what would be uploaded (files, sizes, repos) and upload nothing."""
    private: bool = True
    """Create the Hub repos private."""

    def __post_init__(self) -> None:
        from huggingface_hub.utils import validate_repo_id

        if self.which not in {w.value for w in ExportWhich}:
            raise ValueError(f"which={self.which!r}; choose generator, verifier or both")
        self.which = ExportWhich(self.which)
        if self.iteration is not None and self.iteration < 0:
            raise ValueError(f"iteration={self.iteration} must be >= 0 (or null for the last)")
        for kind in self.kinds():
            repo_id = self.repo_id(kind)
            if repo_id is None and self.push:
                raise ValueError(f"push=true needs {kind}_repo_id (e.g. {kind}_repo_id=user/mucode-{kind})")
            try:
                if repo_id is not None:
                    validate_repo_id(repo_id)
            except ValueError as e:
                raise ValueError(f"{kind}_repo_id={repo_id!r}: {e}") from None

    def kinds(self) -> list[str]:
        return [GENERATOR, VERIFIER] if self.which is ExportWhich.both else [self.which.value]

    def repo_id(self, kind: str) -> str | None:
        return self.generator_repo_id if kind == GENERATOR else self.verifier_repo_id


@dataclass
class ExportResult:
    """What the stage wrote and sent."""

    folders: dict[str, Path]
    """kind -> exported folder."""
    uploads: list[Upload]
    """What was (push) or would be (dry_run) uploaded."""
    pushed: bool


def run(config: ExportConfig) -> ExportResult:
    """Write the Hub-ready folders with their cards; push them, or list the upload when dry_run."""
    token = hub_token() if config.push and not config.dry_run else None  # fail before any work
    layout = RunLayout(Path(config.run_dir))
    summary = Summary.read(layout.summary)
    sources = [locate(layout, kind, config.iteration) for kind in config.kinds()]  # all checked first
    out_dir = Path(config.out_dir) if config.out_dir is not None else layout.export
    folders = {s.kind: write_folder(s, RunFacts.read(layout.root, s.stage_dir, config.license), summary,
                                    config.repo_id(s.kind), out_dir / s.kind) for s in sources}
    uploads = [upload_plan(folders[s.kind], config.repo_id(s.kind)) for s in sources]
    if config.push and not config.dry_run:
        push(uploads, config.private, token)
        return ExportResult(folders, uploads, pushed=True)
    log.info("dry run, nothing uploaded; push would send:" if config.dry_run else "ready to push (push=true):")
    for line in (ln for u in uploads for ln in u.describe()):
        log.info("%s", line)
    return ExportResult(folders, uploads, pushed=False)
