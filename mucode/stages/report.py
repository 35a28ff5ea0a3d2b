"""Stage report: summary.json, report.md and plots of a run, from every complete stage's manifest.

    python pipelines/report.py run_dir=runs/default

The main job runs it as its last stage, and Slurm chains run it after the evaluations (always rerun:
it takes seconds). The run's wall time is the main job's clock (RunLayout.clock) when the main job
wrote one, else the sum of the stage times. See mucode/report.py for what the files hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from mucode import artifacts, report
from mucode.artifacts import RunLayout
from mucode.report import Summary


@dataclass
class ReportConfig:
    """Stage: the report of a run."""

    run_dir: str = "runs/default"
    """The run to report on (see artifacts.RunLayout); the files are written into it."""


def run(config: ReportConfig) -> Summary:
    """Write summary.json, report.md and the plots into run_dir; return the summary."""
    layout = RunLayout(config.run_dir)
    if not any(artifacts.read_manifest(stage) for stage in report.stage_dirs(layout)):
        raise FileNotFoundError(f"{layout.root}: no complete stage to report on; run pipelines/expert_iteration.py "
                                "(or its stages) first")
    return report.write_report(layout.root)
