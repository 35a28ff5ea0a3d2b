"""Stage: the report of a run: summary.json, report.md and plots from every complete stage.

    python pipelines/report.py run_dir=runs/default

Reads every complete manifest.json under run_dir; writes run_dir/summary.json, report.md and the
PNG plots (seconds, one process, no GPU). See mucode/stages/report.py and mucode/report.py.
"""

from mucode.config import stage_main
from mucode.report import fmt_num
from mucode.stages.report import ReportConfig, run


@stage_main("report")
def main(config: ReportConfig) -> None:
    summary = run(config)
    print(f"{config.run_dir}: wall {summary.wall_seconds:.1f} s, {len(summary.generators)} generators evaluated, "
          f"verifier AUC {fmt_num(summary.verifier.auc)}; see report.md and summary.json there")


if __name__ == "__main__":
    main()
