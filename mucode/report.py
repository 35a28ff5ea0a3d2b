"""Per-run report from the stage manifests: summary.json, report.md (paper-style tables) and PNG plots.

    python -m mucode.report runs/default [--wall-seconds 812]
    write_report("runs/default", wall_seconds=812.0)        # the main job calls this at the end

Reads every complete `manifest.json` of the run (artifacts.RunLayout: problems/, base/, warmup/,
iter{i}/rollouts|verifier|relabel|sft, final_verifier/, eval/<generator>/) and writes into run_dir:
    summary.json   {"wall_seconds", "stage_seconds": {stage: s}, "verifier": {"auc", "accuracy", ...},
                    "generators": {"base" | "iter1" | ...: the eval metrics}, "verifiers", "rollouts"}
    report.md      Table 1 (generators x greedy / BoN per selector, final turn, as in the muCode paper),
                   Table 3 (selector ablation by turn, final generator), pass@k, verifier metrics,
                   rollout fix share per iteration, stage times
    accuracy_vs_iteration.png   greedy and pt+lv BoN per generator
    accuracy_vs_turn.png        every selector (and greedy) by turn, final generator
    accuracy_vs_n.png           pt+lv BoN vs N when the eval ran a candidates sweep, else
    pass_at_k.png               pass@k vs k at the final turn, per generator

`wall_seconds`: given by the caller, else the run's own manifest (run_dir/manifest.json), else the sum
of the stage times. A stage whose manifest has no time (merged rollouts) counts the sum of its shards'.
Missing stages are left out; every file is written atomically.

Limits: the "verifier" block is the final verifier's held-out metrics (else the last iteration's);
accuracies are shown in percent with one decimal.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from mucode import artifacts

SELECTORS = ("random", "pt", "lv", "pt+lv")
TOP_STAGES = ("problems", "base", "warmup")
ITERATION_STAGES = ("rollouts", "verifier", "relabel", "sft")
PLOTS = ("accuracy_vs_iteration.png", "accuracy_vs_turn.png", "accuracy_vs_n.png", "pass_at_k.png")


def _order(name: str) -> tuple:
    """base, iter1, iter2, ..., then any other name alphabetically."""
    m = re.fullmatch(r"iter(\d+)", name)
    return (0, 0, "") if name == "base" else (1, int(m.group(1)), "") if m else (2, 0, name)


def iterations(root: Path) -> list[int]:
    """The expert iterations present in the run (iter{i} folders), ascending."""
    return sorted(int(p.name[4:]) for p in root.glob("iter*") if re.fullmatch(r"iter\d+", p.name) and p.is_dir())


def stage_manifests(root: Path) -> dict[str, dict]:
    """Stage name ("warmup", "iter1/rollouts", "eval/base", ...) -> its complete manifest, in run order."""
    evals = sorted((p.name for p in (root / "eval").glob("*") if p.is_dir()), key=_order)
    names = [*TOP_STAGES, *(f"iter{i}/{s}" for i in iterations(root) for s in ITERATION_STAGES),
             "final_verifier", *(f"eval/{n}" for n in evals)]
    return {n: m for n in names if (m := artifacts.read_manifest(root / n)) is not None}


def stage_seconds(root: Path, name: str, manifest: dict) -> float:
    """The stage's wall time; without one (merged rollouts), the sum of its shards' times."""
    if manifest.get("seconds") is not None:
        return float(manifest["seconds"])
    shards = [artifacts.read_manifest(p) for p in sorted((root / name).glob("shard-*"))]
    return float(sum(m["seconds"] or 0.0 for m in shards if m is not None))


def verifier_block(metrics: dict) -> dict:
    """The held-out verifier metrics of a verifier stage's manifest ("valid", or top level)."""
    valid = metrics.get("valid")
    return valid if isinstance(valid, dict) else {k: v for k, v in metrics.items() if not isinstance(v, dict)}


def summarize_run(run_dir: str | Path, wall_seconds: float | None = None) -> dict[str, Any]:
    """The summary.json content of a run (pure reading; nothing is written)."""
    root = Path(run_dir)
    manifests = stage_manifests(root)
    seconds = {n: stage_seconds(root, n, m) for n, m in manifests.items()}
    run = artifacts.read_manifest(root)  # the main job's own manifest, when it wrote one
    if wall_seconds is None and run is not None and run.get("seconds") is not None:
        wall_seconds = run["seconds"]
    verifiers = {n.split("/")[0]: verifier_block(m["metrics"]) for n, m in manifests.items()
                 if n.endswith("/verifier") or n == "final_verifier"}
    final = verifiers.get("final_verifier") or (verifiers[max(verifiers, key=_order)] if verifiers else {})
    return {
        "run_dir": str(root),
        "wall_seconds": float(wall_seconds if wall_seconds is not None else sum(seconds.values())),
        "stage_seconds": seconds,
        "verifier": {"auc": final.get("auc"), "accuracy": final.get("accuracy"),
                     **{k: v for k, v in final.items() if k not in ("auc", "accuracy")}},
        "verifiers": verifiers,
        "generators": {n.split("/", 1)[1]: m["metrics"] for n, m in manifests.items() if n.startswith("eval/")},
        "rollouts": {n.split("/")[0]: m["metrics"] for n, m in manifests.items() if n.endswith("/rollouts")},
    }


def _pct(x: Any) -> str:
    return "—" if not isinstance(x, (int, float)) or math.isnan(x) else f"{100 * x:.1f}"


def _num(x: Any, digits: int = 3) -> str:
    return "—" if not isinstance(x, (int, float)) or math.isnan(x) else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _bon(g: dict, selector: str) -> dict:
    return g.get("bon", {}).get(selector, {})


def _greedy(g: dict) -> dict:
    return g.get("greedy", {})


def generator_tables(generators: dict[str, dict]) -> list[str]:
    """Table 1 (every generator, final turn), Table 3 (final generator by turn) and pass@k."""
    if not generators:
        return ["## Generators", "", "No evaluation yet (run pipelines/evaluate.py).", ""]
    final_name, final = list(generators.items())[-1]
    shape = f"BoN with S={final.get('searches', '?')} searches x N={final.get('candidates', '?')} candidates, " \
            f"T={final.get('turns', '?')} turns, on {final.get('problems', '?')} {final.get('split', '')} problems"
    lines = ["## Table 1: accuracy by generator (final turn, %)", "", shape + ".", ""]
    lines += _table(["Generator", "Greedy", *(f"BoN {s}" for s in SELECTORS)],
                    [[n, _pct(_greedy(g).get("accuracy")), *(_pct(_bon(g, s).get("accuracy")) for s in SELECTORS)]
                     for n, g in generators.items()])
    turns = max(len(m.get("by_turn", [])) for m in [_greedy(final), *(_bon(final, s) for s in SELECTORS)])
    rows = [[s, *(_pct(v) for v in _bon(final, s).get("by_turn", []))] for s in SELECTORS]
    rows.append(["greedy", *(_pct(v) for v in _greedy(final).get("by_turn", []))])
    lines += ["", f"## Table 3: selector ablation for {final_name}, accuracy by turn (%)", ""]
    lines += _table(["Selector", *(f"Turn {t}" for t in range(1, turns + 1))], rows)
    with_k = {n: g["pass_at_k"] for n, g in generators.items() if g.get("pass_at_k", {}).get("by_turn")}
    if with_k:
        ks = max((p["k"] for p in with_k.values()), key=len)
        lines += ["", "## pass@k at the final turn (%; random selector's searches as independent episodes)", ""]
        lines += _table(["Generator", *(f"pass@{k}" for k in ks)],
                        [[n, *(_pct(v) for v in p["by_turn"][-1])] for n, p in with_k.items()])
    return lines + [""]


def run_tables(summary: dict) -> list[str]:
    """Verifier metrics, rollout fix share per iteration and stage times."""
    keys = ("auc", "pair_accuracy", "accuracy", "ece", "brier", "bon_selection_accuracy", "bon_selection_random")
    lines = ["## Verifier (held-out problems)", ""]
    rows = [[n, *(_num(v.get(k)) for k in keys)] for n, v in summary["verifiers"].items()]
    lines += _table(["Verifier", *keys], rows or [["none", *("—" for _ in keys)]])
    lines += ["", "## Rollouts (share of turn-1 failures fixed by a later turn)", ""]
    lines += _table(["Iteration", "Episodes", "Correct by turn (%)", "Turn-1 failures", "Fix share (%)"],
                    [[n, str(m.get("episodes", "—")), " / ".join(_pct(v) for v in m.get("correct_by_turn", [])),
                      str(m.get("turn1_failures", "—")), _pct(m.get("fix_share"))]
                     for n, m in summary["rollouts"].items()])
    lines += ["", "## Stage times", ""]
    rows = [[n, f"{s:.1f}"] for n, s in summary["stage_seconds"].items()]
    rows += [["sum of stages", f"{sum(summary['stage_seconds'].values()):.1f}"],
             ["wall", f"{summary['wall_seconds']:.1f}"]]
    return lines + _table(["Stage", "Seconds"], rows) + [""]


def _figure():
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, Agg renders savefig

    fig = Figure(figsize=(5.5, 3.6), dpi=110)
    return fig, fig.add_subplot()


def _save(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> str:
    from matplotlib.ticker import MaxNLocator

    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if xlabel != "generator":  # turns, N and k are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    artifacts.atomic_write_bytes(path, buf.getvalue())
    return path.name


def write_plots(root: Path, generators: dict[str, dict]) -> list[str]:
    """The PNGs of the report (names written); none without an evaluation."""
    if not generators:
        return []
    names, (final_name, final) = list(generators), list(generators.items())[-1]
    written = []
    fig, ax = _figure()
    for label, mode in (("greedy", _greedy), ("BoN pt+lv", lambda g: _bon(g, "pt+lv"))):
        ax.plot(names, [100 * mode(g).get("accuracy", math.nan) for g in generators.values()], "o-", label=label)
    written.append(_save(fig, ax, root / PLOTS[0], "generator", "accuracy (%)", "Accuracy by iteration"))
    fig, ax = _figure()
    for label, by_turn in [*((f"BoN {s}", _bon(final, s).get("by_turn", [])) for s in SELECTORS),
                           ("greedy", _greedy(final).get("by_turn", []))]:
        ax.plot(range(1, len(by_turn) + 1), [100 * v for v in by_turn], "o-", label=label)
    written.append(_save(fig, ax, root / PLOTS[1], "turn", "accuracy (%)", f"Accuracy by turn ({final_name})"))
    fig, ax = _figure()
    if sweep := final.get("bon_by_n"):
        ax.plot(sweep["n"], [100 * v for v in sweep["accuracy"]], "o-", label=f"BoN {sweep.get('selector')}")
        written.append(_save(fig, ax, root / PLOTS[2], "N (candidates per turn)", "accuracy (%)",
                             f"Accuracy vs N ({final_name})"))
    else:
        for n, g in generators.items():
            if g.get("pass_at_k", {}).get("by_turn"):
                ax.plot(g["pass_at_k"]["k"], [100 * v for v in g["pass_at_k"]["by_turn"][-1]], "o-", label=n)
        written.append(_save(fig, ax, root / PLOTS[3], "k", "pass@k (%)", "pass@k at the final turn"))
    return written


def write_report(run_dir: str | Path, wall_seconds: float | None = None) -> dict[str, Any]:
    """Write summary.json, report.md and the plots into run_dir; return the summary."""
    root = Path(run_dir)
    summary = summarize_run(root, wall_seconds)
    plots = write_plots(root, summary["generators"])
    lines = [f"# mucode run report: {root}", "",
             f"Wall time {summary['wall_seconds']:.1f} s; verifier AUC {_num(summary['verifier']['auc'])}, "
             f"accuracy {_num(summary['verifier']['accuracy'])}.", ""]
    lines += generator_tables(summary["generators"]) + run_tables(summary)
    lines += ["## Plots", "", *(f"![{p[:-4]}]({p})" for p in plots), ""]
    artifacts.atomic_write_json(root / "summary.json", summary)
    artifacts.atomic_write_text(root / "report.md", "\n".join(lines))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write summary.json, report.md and plots of a mucode run.")
    parser.add_argument("run_dir")
    parser.add_argument("--wall-seconds", type=float, default=None, help="the run's wall time (else read or summed)")
    args = parser.parse_args(argv)
    if not Path(args.run_dir).is_dir():
        parser.error(f"{args.run_dir}: no such run directory")
    summary = write_report(args.run_dir, args.wall_seconds)
    print(json.dumps({"report": str(Path(args.run_dir) / "report.md"), "wall_seconds": summary["wall_seconds"],
                      "verifier": summary["verifier"]}))


if __name__ == "__main__":
    main()
