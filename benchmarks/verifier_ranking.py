"""Does a verifier rank the candidates of one problem? Turn-1 Best-of-N on a candidate pool (README "What the
main job shows").

    python benchmarks/verifier_ranking.py RUN_DIR [--generator iter2] [--problems 300] [--samples 32] [--n 4]
        [--verifier PATH ...] [--likelihood iter2 ...] [--json OUT] [--pool POOL.json]

RUN_DIR is a finished main job; nothing in it is written. The pool: `--samples` turn-1 codes per problem of
the VALID split (never test), sampled from `--generator` at the main job's temperature 0.8 and executed in
the sandbox (public pass, and correct = public and private pass). Consecutive groups of `--n` samples of a
problem play the N candidates of one Best-of-N step. Each scorer picks one candidate per group:
    random, pt   the expected accuracy of a uniform pick (among the public passers, for pt)
    lv, pt+lv    as mucode.search.select: the top distinct code by log sum exp(score) over its copies in the
                 group (pt+lv: public pass first); "lv argmax", "pt+lv argmax": the paper's argmax over candidates
    pt+cluster   public pass first, then the cluster of equal outputs on the probe calls (mucode.probes)
Scorers: every `--verifier` (default: the run's iter*/verifier and final_verifier) and, for each `--likelihood`
generator, the sum of its token log-probabilities of the code given the turn-1 prompt (not a learned
verifier: the reference for how much ranking the generator itself holds). Per scorer, over the pool's
distinct codes: AUC and pair_accuracy (mucode.metrics.verifier_metrics; pair_accuracy counts
(correct, wrong) pairs of the same problem, 0.5 = chance), and the same pair accuracy (ties 0.5) over all
pairs, over pairs whose wrong code passes the public tests too (they decide pt+lv against pt) and over
pairs one token edit apart, with their counts; `pt+oracle` is the headroom of any pt-first selector (a
correct code among the group's public passers). `--pool` saves the sampled pool (or reads it back), so
verifiers trained later are scored on the very same candidates.
"""

import argparse
import json
import math
import re
import statistics
import sys
import time
from pathlib import Path

from mucode import lm_verifier, recipes
from mucode.artifacts import RunLayout
from mucode.generation import open_backend
from mucode.metrics import verifier_metrics
from mucode.models import ModelConfig, load_generator
from mucode.prompts import extract_code, first_turn, problem_text, render
from mucode.records import Problem, read_records
from mucode.sandbox import Job, Sandbox, SandboxConfig
from mucode.probes import outputs, probe_tests
from mucode.search import Candidate, Selector, select
from mucode.verifier import load_scorer


def generator_path(run: Path, name: str) -> str:
    """The run's generator `name` (base or iter0: the warm start; iterI: generator I)."""
    i = 0 if name == "iter0" else RunLayout.generator_index(name)
    if i is None:
        sys.exit(f"error: {name!r} is not a run generator; use base or iterI")
    return RunLayout(run).generator(i, ModelConfig().name_or_path)


def sample_pool(problems: list[Problem], generator: str, samples: int) -> list[dict]:
    """`samples` executed turn-1 candidates per problem: {"pid", "code", "public", "correct", "outputs"}."""
    sampling = recipes.sampling()  # the main job's: temperature 0.8, 96 new tokens
    backend = open_backend(ModelConfig(), generator, sampling)
    prompts = [render(backend.tokenizer, first_turn(p)) for p in problems for _ in range(samples)]
    texts = [c.text for c in backend.generate(prompts, sampling)]
    owners = [p for p in problems for _ in range(samples)]
    codes = [extract_code(t, p.entry_point) for t, p in zip(texts, owners)]
    tests = {p.id: probe_tests(p, recipes.evaluation().search.probes) for p in problems}
    with Sandbox(SandboxConfig()) as sandbox:
        results = sandbox.run_batch([Job.for_problem(p, c) for c, p in zip(codes, owners)])
        probed = sandbox.run_batch([Job(c, tests[p.id]) for c, p in zip(codes, owners)])
    return [{"pid": p.id, "code": c, "public": r.public_passed, "correct": r.passed,
             "outputs": outputs(o) if tests[p.id] else ()} for p, c, r, o in zip(owners, codes, results, probed)]


def likelihood(generator: str, problems: dict[str, Problem], keys: list[tuple[str, str]]) -> list[float]:
    """Sum of the generator's log-probabilities of each (problem id, code)'s answer given its turn-1 prompt
    (what an untrained loglik verifier with beta 1 scores)."""
    model, tok = load_generator(ModelConfig(), generator)
    tokens = [lm_verifier.code_tokens(tok, problem_text(problems[pid]), code, 10**9) for pid, code in keys]
    return [s for s, _ in lm_verifier.logprob_sums(model, tokens, tok.pad_token_id)]


def code_tokens(code: str) -> list[str]:
    """Identifiers, numbers and single punctuation characters: the unit of "one edit apart"."""
    return re.findall(r"\w+|\S", code)


def one_edit_apart(a: list[str], b: list[str]) -> bool:
    """Token edit distance exactly 1 (one token substituted, inserted or deleted)."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1:] == b[i + 1:]
    return (a[i + 1:] == b[i:]) if len(a) > len(b) else (a[i:] == b[i + 1:])


def ranking_strata(pool: list[dict], score: dict[tuple[str, str], float]) -> dict[str, float | int]:
    """Within-problem pair accuracy over distinct codes, P(score(correct) > score(wrong)) with ties 0.5:
    over all (correct, wrong) pairs, over those where both pass the public tests (the pairs that decide
    pt+lv against pt), and over those one token edit apart (near misses); with the number of pairs."""
    codes: dict[str, dict[str, dict]] = {}
    for c in pool:
        codes.setdefault(c["pid"], {})[c["code"]] = c
    hits: dict[str, list[float]] = {"pairs": [], "pairs_both_public": [], "pairs_one_edit": []}
    for pid, by_code in codes.items():
        good = [c for c in by_code.values() if c["correct"]]
        bad = [c for c in by_code.values() if not c["correct"]]
        for g in good:
            for b in bad:
                sg, sb = score[(pid, g["code"])], score[(pid, b["code"])]
                hit = 1.0 if sg > sb else 0.5 if sg == sb else 0.0
                hits["pairs"].append(hit)
                if b["public"]:  # a correct code passes its public tests too
                    hits["pairs_both_public"].append(hit)
                if one_edit_apart(code_tokens(g["code"]), code_tokens(b["code"])):
                    hits["pairs_one_edit"].append(hit)
    out: dict[str, float | int] = {}
    for name, values in hits.items():
        out[f"{name}_accuracy"] = statistics.mean(values) if values else math.nan
        out[f"{name}_n"] = len(values)
    return out


def selection(pool: list[dict], score: dict[tuple[str, str], float], n: int) -> dict[str, float]:
    """Accuracy of each selector over the pool's groups of n candidates."""
    argmax = (Selector.lv, Selector.pt_lv)
    acc: dict[str, list[float]] = {k: [] for k in [s.value for s in Selector] + [f"{s.value} argmax" for s in argmax]
                                   + ["pt+oracle"]}
    for start in range(0, len(pool) - n + 1, n):
        group = pool[start:start + n]
        passing = [c for c in group if c["public"]] or group
        acc["random"].append(statistics.mean(c["correct"] for c in group))
        acc["pt"].append(statistics.mean(c["correct"] for c in passing))
        acc["pt+oracle"].append(float(any(c["correct"] for c in passing)))  # the headroom of any pt+ selector
        cands = [Candidate(c["code"], c["public"], c["correct"], "", score[(c["pid"], c["code"])],
                           tuple(c.get("outputs", ()))) for c in group]
        for sel in (Selector.lv, Selector.pt_lv, Selector.pt_cluster):
            acc[sel.value].append(float(cands[select(sel, cands, None)].correct))
        for sel in argmax:
            acc[f"{sel.value} argmax"].append(float(cands[select(sel, cands, None, aggregate=False)].correct))
    return {k: statistics.mean(v) for k, v in acc.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--generator", default="iter2", help="the pool's generator: base or iterI")
    parser.add_argument("--problems", type=int, default=300)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--verifier", nargs="*", help="verifier model folders (default: the run's iter*/verifier)")
    parser.add_argument("--likelihood", nargs="*", default=["base", "iter2"], help="generators scored by likelihood")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--pool", type=Path, help="a JSON file: read the pool from it when it exists, else sample "
                        "the pool and write it there (every variant then scores the same candidates)")
    args = parser.parse_args()
    if args.samples % args.n:
        sys.exit(f"--samples={args.samples} must be a multiple of --n={args.n}")
    problems = read_records(RunLayout(args.run).problems("valid"), Problem)[: args.problems]
    by_id = {p.id: p for p in problems}
    start = time.perf_counter()
    if args.pool and args.pool.is_file():
        pool = json.loads(args.pool.read_text())
    else:
        pool = sample_pool(problems, generator_path(args.run, args.generator), args.samples)
        if args.pool:
            args.pool.write_text(json.dumps(pool))
    correct, public = (statistics.mean(c[k] for c in pool) for k in ("correct", "public"))
    print(f"pool: {len(pool)} candidates from {args.generator} in {time.perf_counter() - start:.0f} s; "
          f"correct {correct:.3f}, public {public:.3f}")
    keys = list(dict.fromkeys((c["pid"], c["code"]) for c in pool))
    labels = {(c["pid"], c["code"]): c["correct"] for c in pool}
    verifiers = args.verifier if args.verifier is not None else sorted(
        str(p) for p in [*args.run.glob("iter*/verifier/model"), *args.run.glob("final_verifier/model")])
    pairs = [(problem_text(by_id[p]), c) for p, c in keys]
    scorers = {f"verifier {v}": (lambda v=v: load_scorer(v, ModelConfig())(pairs)) for v in verifiers}
    scorers |= {f"likelihood {g}": (lambda g=g: likelihood(generator_path(args.run, g), by_id, keys))
                for g in args.likelihood}
    rows = {}
    for name, scorer in scorers.items():
        scores = dict(zip(keys, scorer()))
        m = verifier_metrics([scores[k] for k in keys], [labels[k] for k in keys], [p for p, _ in keys])
        rows[name] = {"auc": m["auc"], "pair_accuracy": m["pair_accuracy"], **ranking_strata(pool, scores),
                      **selection(pool, scores, args.n)}
        print(f"{name:60s} " + " ".join(f"{k} {v:.3f}" for k, v in rows[name].items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "distinct": len(keys),
                                         "candidates": len(pool), "scorers": rows}, indent=1))


if __name__ == "__main__":
    main()
