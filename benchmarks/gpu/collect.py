"""The numbers of a GPU check (run.sh): its timed parts, and the main job's stages from their manifests.

    python benchmarks/gpu/collect.py RUN_DIR OUT PARTS_TSV

PARTS_TSV holds run.sh's parts, one `name<TAB>exit code<TAB>seconds` line each. Writes OUT/timings.json
({"parts": ..., "stages": ..., "main_job_seconds": ...}), copies RUN_DIR's summary.json and report.md into
OUT when the report stage got that far, and prints one line per part and per stage. A stage the time
box cut off has no manifest and is missing from "stages".
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any


def parts(tsv: Path) -> dict[str, dict[str, float | int]]:
    """run.sh's parts in order: {name: {"rc": exit code, "seconds": s}}."""
    rows = [line.split("\t") for line in tsv.read_text().splitlines() if line.strip()] if tsv.is_file() else []
    return {name: {"rc": int(rc), "seconds": round(float(s), 1)} for name, rc, s in rows}


def stages(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every complete stage of the run in the order it finished (its manifest's time): its seconds (a
    rollouts stage's include its shards', where the sampling happens), and for generation stages the
    tokens/s (and greedy accuracy) it recorded."""
    found, shard_seconds = [], {}
    for path in run_dir.rglob("manifest.json"):
        name = path.parent.relative_to(run_dir).as_posix()
        manifest = json.loads(path.read_text())
        if not manifest.get("complete"):
            continue
        if path.parent.name.startswith("shard-"):
            stage = path.parent.parent.relative_to(run_dir).as_posix()
            shard_seconds[stage] = shard_seconds.get(stage, 0.0) + (manifest.get("seconds") or 0.0)
            continue
        metrics = manifest.get("metrics") or {}
        row: dict[str, Any] = {"seconds": manifest.get("seconds") or 0.0}
        for key in ("tokens_per_s", "generations"):
            if isinstance(metrics.get(key), (int, float)):
                row[key] = round(metrics[key], 1)
        if isinstance(metrics.get("greedy"), dict):
            row["greedy"] = metrics["greedy"].get("accuracy")
        found.append((path.stat().st_mtime, name, row))
    for _, name, row in found:
        row["seconds"] = round(row["seconds"] + shard_seconds.get(name, 0.0), 1)
    return {name: row for _, name, row in sorted(found)}


def main() -> None:
    run_dir, out, tsv = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    clock = run_dir / "driver.json"
    timings = {"parts": parts(tsv), "stages": stages(run_dir) if run_dir.is_dir() else {},
               "main_job_seconds": json.loads(clock.read_text())["wall_seconds"] if clock.is_file() else None}
    (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    for name in ("summary.json", "report.md"):
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, out / name)
    for name, row in timings["parts"].items():
        print(f"part  {name:<22} rc={row['rc']:<4} {row['seconds']:>7.1f} s")
    for name, row in timings["stages"].items():
        extra = "  ".join(f"{k}={v}" for k, v in row.items() if k != "seconds")
        print(f"stage {name:<22} {row['seconds']:>7.1f} s  {extra}")
    if not (run_dir / "summary.json").is_file():
        print("collect: the main job did not reach its report stage (no summary.json)")


if __name__ == "__main__":
    main()
