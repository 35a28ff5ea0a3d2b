"""Per-run report from the stage manifests: summary.json, report.md (paper-style tables) and PNG plots.

    python pipelines/report.py run_dir=runs/default                  # the main job runs it as its last stage
    write_report("runs/default")                                     # the same, from Python
    summary = Summary.read(RunLayout(run_dir).summary)               # typed, for export and notebooks

Reads every complete `manifest.json` of the run (artifacts.RunLayout: problems/, base/, warmup/,
iter{i}/rollouts|verifier|relabel|sft, final_verifier/, eval/<generator>/, eval-<task>/<generator>/)
into a `Summary` and writes into run_dir:
    summary.json   Summary.to_json(): run_dir, wall_seconds, stage_seconds {stage: s}, verifier (the final
                   one: auc, accuracy, ...), verifiers, generators (base, iter1, ...: eval metrics), rollouts,
                   tasks (another task of eval.tasks -> its generators, when there is one)
    report.md      Table 1 (generators x greedy / BoN per selector, final turn, as in the muCode paper,
                   whose four selectors come with pt+cluster beside them), Table 3 (selector ablation by
                   turn, final generator), pass@k (each once per evaluated
                   task: the run's own, then every other of eval.tasks), verifier metrics,
                   rollout fix share per iteration, stage times
    *.png          accuracy_vs_iteration (greedy and pt+lv BoN per generator), accuracy_vs_turn (every
                   selector by turn, final generator), accuracy_vs_n (pt+lv BoN vs N when the eval ran a
                   candidates sweep) else pass_at_k (pass@k vs k at the final turn, per generator)

`wall_seconds`: given by the caller, else the main job's clock (RunLayout.clock, written after each
of its stages), else the sum of the stage times (stages run one by one, e.g. by Slurm). A stage whose
manifest has no time (merged rollouts) counts the sum of its shards'. Missing stages are left out;
every file is written atomically.

Limits: the "verifier" block is the final verifier's held-out metrics (else the last iteration's);
accuracies are shown in percent with one decimal. A metric the manifests do not hold is left out of
summary.json (an undefined one, NaN, is null); a selector an older eval did not run (pt+cluster) is shown
as missing.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mucode import artifacts
from mucode.artifacts import RunLayout
from mucode.search import Selector

REPORT = "report.md"
PLOTS = ("accuracy_vs_iteration.png", "accuracy_vs_turn.png", "accuracy_vs_n.png", "pass_at_k.png")
MISSING = "—"
"""How a missing or undefined metric is shown, in report.md and the model cards."""


def finite(value: Any) -> bool:
    """A metric worth printing: a real number that is not NaN or infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt_pct(value: Any) -> str:
    """A share as a percentage with one decimal (0.4251 -> "42.5")."""
    return f"{100 * value:.1f}" if finite(value) else MISSING


def fmt_num(value: Any) -> str:
    return f"{value:.3f}" if finite(value) else MISSING


def fmt_pcts(values: list[float]) -> str:
    """A by-turn series as percentages: "38.0 / 42.0"."""
    return " / ".join(fmt_pct(v) for v in values) or MISSING


# ---------------------------------------------------------------------------------------------
# The typed summary. Each record reads the dict its stage wrote (known keys into fields, the rest
# into `extra`) and writes it back the same, leaving out fields that were absent (at their default).


def _load(cls: type, data: Any, **nested: Any) -> Any:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    extra = {"extra": {k: v for k, v in data.items() if k not in names}} if "extra" in cls.__dataclass_fields__ else {}
    return cls(**{k: v for k, v in data.items() if k in names and k not in nested}, **nested, **extra)


def _dump(obj: Any, **nested: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if f.name != "extra" and getattr(obj, f.name) != default:
            out[f.name] = nested.get(f.name, getattr(obj, f.name))
    return out | getattr(obj, "extra", {})


@dataclass
class SelectorResult:
    """Greedy, or Best-of-N with one selector (mucode.search.summarize)."""

    accuracy: float | None = None
    """Accuracy after the last turn."""
    by_turn: list[float] = field(default_factory=list)
    """by_turn[t]: accuracy if the search is cut after turn t+1."""
    searches: int | None = None


@dataclass
class PassAtK:
    k: list[int]
    by_turn: list[list[float]]
    """by_turn[t][j]: pass@k[j] after turn t+1."""


@dataclass
class CandidatesSweep:
    """Final-turn BoN accuracy of one selector for each number of candidates per turn."""

    selector: str
    n: list[int]
    accuracy: list[float]


@dataclass
class GeneratorResult:
    """One generator's evaluation: the metrics of its eval/<name> stage."""

    greedy: SelectorResult = field(default_factory=SelectorResult)
    bon: dict[Selector, SelectorResult] = field(default_factory=dict)
    pass_at_k: PassAtK | None = None
    """The random selector's searches taken as independent episodes."""
    bon_by_n: CandidatesSweep | None = None
    searches: int | None = None
    candidates: int | None = None
    turns: int | None = None
    problems: int | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Everything else the eval recorded (generator, verifier, seconds, tokens_per_s, ...)."""

    def bon_accuracy(self, selector: Selector) -> float | None:
        return self.bon[selector].accuracy if selector in self.bon else None

    @classmethod
    def from_json(cls, d: dict) -> GeneratorResult:
        return _load(cls, d, greedy=_load(SelectorResult, d.get("greedy", {})),
                     bon={Selector(s): _load(SelectorResult, r) for s, r in d.get("bon", {}).items()},
                     pass_at_k=_load(PassAtK, d.get("pass_at_k")),
                     bon_by_n=_load(CandidatesSweep, d.get("bon_by_n")))

    def to_json(self) -> dict[str, Any]:
        return _dump(self, greedy=_dump(self.greedy), bon={s.value: _dump(r) for s, r in self.bon.items()},
                     pass_at_k=self.pass_at_k and _dump(self.pass_at_k),
                     bon_by_n=self.bon_by_n and _dump(self.bon_by_n))


@dataclass
class VerifierResult:
    """A verifier's held-out metrics (mucode.verifier.validation_metrics): auc, pair_accuracy,
    accuracy (logit > 0), ece, brier, bon_selection_accuracy, bon_selection_random, ..."""

    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def auc(self) -> float | None:
        return self.metrics.get("auc")

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")

    @property
    def pair_accuracy(self) -> float | None:
        """Within-problem pair accuracy: what Best-of-N needs (accuracy at 0 means nothing for the LM heads)."""
        return self.metrics.get("pair_accuracy")

    @classmethod
    def of_stage(cls, metrics: dict) -> VerifierResult:
        """From a verifier stage's manifest metrics: its "valid" block (or the top level)."""
        valid = metrics.get("valid")
        return cls(valid if isinstance(valid, dict) else {k: v for k, v in metrics.items() if not isinstance(v, dict)})


@dataclass
class RolloutResult:
    """One iteration's rollouts (mucode.rollouts.episode_metrics)."""

    episodes: int | None = None
    correct_by_turn: list[float] = field(default_factory=list)
    """Share of episodes correct by turn t+1."""
    turn1_failures: int | None = None
    fix_share: float | None = None
    """Share of turn-1 failures fixed by a later turn."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Summary:
    """A run's results: summary.json, typed."""

    run_dir: str
    wall_seconds: float
    stage_seconds: dict[str, float]
    """Stage name ("warmup", "iter1/rollouts", "eval/base") -> its wall time, in run order."""
    verifier: VerifierResult
    """The run's final verifier (final_verifier, else the last iteration's); auc and accuracy are always
    in summary.json's block, null without a verifier."""
    verifiers: dict[str, VerifierResult]
    """"iter1", ..., "final_verifier" -> that verifier's metrics."""
    generators: dict[str, GeneratorResult]
    """"base", "iter1", ... (RunLayout.generator_name), then any other evaluated name."""
    rollouts: dict[str, RolloutResult]
    """"iter1", ... -> that iteration's rollouts."""
    tasks: dict[str, dict[str, GeneratorResult]] = field(default_factory=dict)
    """Every other task the generators were evaluated on (eval.tasks) -> its generators, as `generators`;
    in summary.json only when there is one."""

    def to_json(self) -> dict[str, Any]:
        out = {"run_dir": self.run_dir, "wall_seconds": self.wall_seconds, "stage_seconds": self.stage_seconds,
               "verifier": {"auc": self.verifier.auc, "accuracy": self.verifier.accuracy, **self.verifier.metrics},
               "verifiers": {n: v.metrics for n, v in self.verifiers.items()},
               "generators": {n: g.to_json() for n, g in self.generators.items()},
               "rollouts": {n: _dump(r) for n, r in self.rollouts.items()}}
        if self.tasks:
            out["tasks"] = {t: {n: g.to_json() for n, g in gens.items()} for t, gens in self.tasks.items()}
        return out

    @classmethod
    def from_json(cls, d: dict) -> Summary:
        return cls(str(d["run_dir"]), float(d["wall_seconds"]), dict(d["stage_seconds"]),
                   VerifierResult(dict(d["verifier"])), {n: VerifierResult(dict(v)) for n, v in d["verifiers"].items()},
                   {n: GeneratorResult.from_json(g) for n, g in d["generators"].items()},
                   {n: _load(RolloutResult, r) for n, r in d["rollouts"].items()},
                   {t: {n: GeneratorResult.from_json(g) for n, g in gens.items()}
                    for t, gens in d.get("tasks", {}).items()})

    @classmethod
    def read(cls, path: str | Path) -> Summary:
        """A summary.json written by write_report; a missing or malformed file fails with one line."""
        path = artifacts.require(path, "run summary", "the report stage")
        try:
            return cls.from_json(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e}); rerun the report stage") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{path}: not a run summary ({type(e).__name__}: {e}); rerun the report stage") from None


# ---------------------------------------------------------------------------------------------
# Reading the run


def stage_dirs(layout: RunLayout) -> list[Path]:
    """Every stage folder a run can hold, in run order (present or not)."""
    steps = (layout.rollouts, layout.verifier, layout.relabel, layout.sft)
    others = layout.eval_tasks()
    return [layout.problems(), *(layout.problems(task=t) for t in others), layout.base, layout.warmup,
            *(s(i) for i in layout.iterations() for s in steps), layout.final_verifier,
            *(layout.eval(n) for n in layout.evaluations()),
            *(layout.eval(n, t) for t in others for n in layout.evaluations(t))]


def stage_seconds(stage: Path, manifest: dict) -> float:
    """The stage's wall time; a sharded stage (rollouts) adds its shards' times to its own (the merge's)."""
    shards = [artifacts.read_manifest(p) for p in sorted(stage.glob("shard-*"))]
    own = manifest.get("seconds") or 0.0
    return float(own + sum(m["seconds"] or 0.0 for m in shards if m is not None))


def clock_seconds(layout: RunLayout) -> float | None:
    """The main job's wall time across its resumed invocations, when it wrote its clock."""
    if not layout.clock.is_file():
        return None
    try:
        return float(json.loads(layout.clock.read_text())["wall_seconds"])
    except (KeyError, TypeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"{layout.clock}: not the main job's clock ({e}); delete it to sum stage times") from None


def evaluated(layout: RunLayout, done: dict[Path, dict], task: str | None = None) -> dict[str, GeneratorResult]:
    """The complete evaluations on the run's task (or on `task`), by generator name, in order."""
    return {n: GeneratorResult.from_json(done[layout.eval(n, task)]["metrics"])
            for n in layout.evaluations(task) if layout.eval(n, task) in done}


def summarize_run(run_dir: str | Path, wall_seconds: float | None = None) -> Summary:
    """The Summary of a run from its complete stages (pure reading; nothing is written)."""
    layout = RunLayout(Path(run_dir))
    done = {d: m for d in stage_dirs(layout) if (m := artifacts.read_manifest(d)) is not None}
    seconds = {layout.stage_name(d): stage_seconds(d, m) for d, m in done.items()}
    if wall_seconds is None:
        wall_seconds = clock_seconds(layout)
    iters = layout.iterations()
    named = [*((layout.stage_name(layout.iteration(i)), layout.verifier(i)) for i in iters),
             (layout.stage_name(layout.final_verifier), layout.final_verifier)]
    verifiers = {n: VerifierResult.of_stage(done[d]["metrics"]) for n, d in named if d in done}
    final_stage = layout.final_verifier_stage()
    final = VerifierResult.of_stage(done[final_stage]["metrics"]) if final_stage else VerifierResult()
    return Summary(
        run_dir=str(layout.root),
        wall_seconds=float(wall_seconds if wall_seconds is not None else sum(seconds.values())),
        stage_seconds=seconds,
        verifier=VerifierResult({"auc": final.auc, "accuracy": final.accuracy, **final.metrics}),
        verifiers=verifiers,
        generators=evaluated(layout, done),
        tasks={t: gens for t in layout.eval_tasks() if (gens := evaluated(layout, done, t))},
        rollouts={layout.stage_name(layout.iteration(i)): _load(RolloutResult, done[layout.rollouts(i)]["metrics"])
                  for i in iters if layout.rollouts(i) in done},
    )


# ---------------------------------------------------------------------------------------------
# report.md and plots


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def generator_tables(generators: dict[str, GeneratorResult], task: str | None = None) -> list[str]:
    """Table 1 (every generator, final turn), Table 3 (final generator by turn) and pass@k, on the run's
    task or (headed by its name) on another one."""
    head = f"## {task}: " if task else "## "
    if not generators:
        return [f"{head}Generators", "", "No evaluation yet (run pipelines/evaluate.py).", ""]
    final_name, final = list(generators.items())[-1]
    on = final.extra.get("task")
    shape = (f"BoN with S={final.searches or '?'} searches x N={final.candidates or '?'} candidates, "
             f"T={final.turns or '?'} turns, on {final.problems or '?'} {final.split or ''} problems"
             + (f" of {on}" if on else "") + _selection_note(final.extra.get("aggregate")))
    lines = [f"{head}Table 1: accuracy by generator (final turn, %)", "", shape + ".", ""]
    lines += _table(["Generator", "Greedy", *(f"BoN {s.value}" for s in Selector)],
                    [[n, fmt_pct(g.greedy.accuracy), *(fmt_pct(g.bon_accuracy(s)) for s in Selector)]
                     for n, g in generators.items()])
    series = [(s.value, final.bon.get(s, SelectorResult()).by_turn) for s in Selector]
    series.append(("greedy", final.greedy.by_turn))
    turns = max(len(by_turn) for _, by_turn in series)
    lines += ["", f"{head}Table 3: selector ablation for {final_name}, accuracy by turn (%)", ""]
    lines += _table(["Selector", *(f"Turn {t}" for t in range(1, turns + 1))],
                    [[name, *(fmt_pct(v) for v in by_turn), *[MISSING] * (turns - len(by_turn))]
                     for name, by_turn in series])
    with_k = {n: g.pass_at_k for n, g in generators.items() if g.pass_at_k and g.pass_at_k.by_turn}
    if with_k:
        ks = max((p.k for p in with_k.values()), key=len)
        lines += ["", f"{head}pass@k at the final turn (%; random selector's searches as independent episodes)", ""]
        lines += _table(["Generator", *(f"pass@{k}" for k in ks)],
                        [[n, *(fmt_pct(v) for v in p.by_turn[-1])] for n, p in with_k.items()])
    return lines + [""]


def _selection_note(aggregate: bool | None) -> str:
    """How lv and pt+lv picked, when the eval recorded it (older summaries did not: argmax)."""
    if aggregate is None:
        return ""
    return ("; lv and pt+lv summed over identical codes" if aggregate
            else "; lv and pt+lv: the paper's argmax over candidates")


def run_tables(summary: Summary) -> list[str]:
    """Verifier metrics, rollout fix share per iteration and stage times."""
    keys = ("auc", "pair_accuracy", "accuracy", "ece", "brier", "bon_selection_accuracy", "bon_selection_random")
    lines = ["## Verifier (held-out problems)", ""]
    rows = [[n, *(fmt_num(v.metrics.get(k)) for k in keys)] for n, v in summary.verifiers.items()]
    lines += _table(["Verifier", *keys], rows or [["none", *(MISSING for _ in keys)]])
    lines += ["", "## Rollouts (share of turn-1 failures fixed by a later turn)", ""]
    lines += _table(["Iteration", "Episodes", "Correct by turn (%)", "Turn-1 failures", "Fix share (%)"],
                    [[n, str(r.episodes if r.episodes is not None else MISSING), fmt_pcts(r.correct_by_turn),
                      str(r.turn1_failures if r.turn1_failures is not None else MISSING), fmt_pct(r.fix_share)]
                     for n, r in summary.rollouts.items()])
    lines += ["", "## Stage times", ""]
    rows = [[n, f"{s:.1f}"] for n, s in summary.stage_seconds.items()]
    rows += [["sum of stages", f"{sum(summary.stage_seconds.values()):.1f}"], ["wall", f"{summary.wall_seconds:.1f}"]]
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


def _pct_points(values: list[float | None]) -> list[float]:
    return [100 * v if finite(v) else math.nan for v in values]


def write_plots(root: Path, generators: dict[str, GeneratorResult]) -> list[str]:
    """The PNGs of the report (names written); none without an evaluation."""
    if not generators:
        return []
    names, (final_name, final) = list(generators), list(generators.items())[-1]
    written = []
    fig, ax = _figure()
    ax.plot(names, _pct_points([g.greedy.accuracy for g in generators.values()]), "o-", label="greedy")
    ax.plot(names, _pct_points([g.bon_accuracy(Selector.pt_lv) for g in generators.values()]), "o-",
            label=f"BoN {Selector.pt_lv.value}")
    written.append(_save(fig, ax, root / PLOTS[0], "generator", "accuracy (%)", "Accuracy by iteration"))
    fig, ax = _figure()
    for label, by_turn in [*((f"BoN {s.value}", final.bon.get(s, SelectorResult()).by_turn) for s in Selector),
                           ("greedy", final.greedy.by_turn)]:
        ax.plot(range(1, len(by_turn) + 1), _pct_points(by_turn), "o-", label=label)
    written.append(_save(fig, ax, root / PLOTS[1], "turn", "accuracy (%)", f"Accuracy by turn ({final_name})"))
    fig, ax = _figure()
    if sweep := final.bon_by_n:
        ax.plot(sweep.n, _pct_points(sweep.accuracy), "o-", label=f"BoN {sweep.selector}")
        written.append(_save(fig, ax, root / PLOTS[2], "N (candidates per turn)", "accuracy (%)",
                             f"Accuracy vs N ({final_name})"))
    else:
        for n, g in generators.items():
            if g.pass_at_k and g.pass_at_k.by_turn:
                ax.plot(g.pass_at_k.k, _pct_points(g.pass_at_k.by_turn[-1]), "o-", label=n)
        written.append(_save(fig, ax, root / PLOTS[3], "k", "pass@k (%)", "pass@k at the final turn"))
    return written


def write_report(run_dir: str | Path, wall_seconds: float | None = None) -> Summary:
    """Write summary.json, report.md and the plots into run_dir; return the summary."""
    layout = RunLayout(Path(run_dir))
    summary = summarize_run(layout.root, wall_seconds)
    plots = write_plots(layout.root, summary.generators)
    lines = [f"# mucode run report: {layout.root}", "",
             f"Wall time {summary.wall_seconds:.1f} s; verifier AUC {fmt_num(summary.verifier.auc)}, "
             f"within-problem pair accuracy {fmt_num(summary.verifier.pair_accuracy)}.", ""]
    lines += generator_tables(summary.generators)
    for task, generators in summary.tasks.items():
        lines += generator_tables(generators, task)
    lines += run_tables(summary)
    lines += ["## Plots", "", *(f"![{p[:-4]}]({p})" for p in plots), ""]
    artifacts.atomic_write_json(layout.summary, summary.to_json())
    artifacts.atomic_write_text(layout.root / REPORT, "\n".join(lines))
    return summary
