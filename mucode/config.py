"""Typed Hydra configs: every stage's dataclass schema in one ConfigStore, and the stage entry wrapper.

Each pipeline's YAML (conf/<stage>.yaml) starts with `defaults: [<stage>_schema, ..., _self_]`, so
Hydra validates every value against the dataclass; sub-config groups (task/, model/, ...) merge into
typed fields. The entry wrapper converts the composed config once with `OmegaConf.to_object` (which
runs each dataclass's `__post_init__` checks) and turns user errors into one line on stderr and exit 2:

    @stage_main("collect_rollouts")
    def main(config: CollectRolloutsConfig) -> None:
        print(run(config))

Configs live in `conf/` at the repository root (mucode runs from a clone, installed editable, like
nanochat/torchtune).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# Errors a user can cause and fix: bad values and malformed rows (ValueError), missing files, no
# permission or a full disk (OSError), a missing optional package. Anything else is a bug and keeps
# its traceback.
USER_ERRORS = (ValueError, OSError, ModuleNotFoundError)


STAGES = ("prepare", "warm_start", "collect_rollouts", "train_verifier", "relabel", "train_generator",
          "evaluate", "report", "solve", "export", "expert_iteration")
"""Every stage: a module of mucode.stages, a script in pipelines/, a YAML in conf/ and a schema, one name."""


def schemas() -> dict[str, type]:
    """Stage name -> its root config dataclass (imported lazily: each lives in its stage module)."""
    from mucode.stages.collect_rollouts import CollectRolloutsConfig
    from mucode.stages.evaluate import EvaluateConfig
    from mucode.stages.expert_iteration import ExpertIterationConfig
    from mucode.stages.export import ExportConfig
    from mucode.stages.prepare import PrepareConfig
    from mucode.stages.relabel import RelabelStageConfig
    from mucode.stages.report import ReportConfig
    from mucode.stages.solve import SolveConfig
    from mucode.stages.train_generator import TrainGeneratorConfig
    from mucode.stages.train_verifier import TrainVerifierConfig
    from mucode.stages.warm_start import WarmStartConfig

    found = {
        "prepare": PrepareConfig, "warm_start": WarmStartConfig, "collect_rollouts": CollectRolloutsConfig,
        "train_verifier": TrainVerifierConfig, "relabel": RelabelStageConfig,
        "train_generator": TrainGeneratorConfig, "evaluate": EvaluateConfig, "report": ReportConfig,
        "solve": SolveConfig, "export": ExportConfig, "expert_iteration": ExpertIterationConfig,
    }
    assert tuple(found) == STAGES, "config.STAGES and schemas() disagree"
    return found


def register() -> None:
    """Store every stage schema as `<stage>_schema` in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for name, node in schemas().items():
        cs.store(name=f"{name}_schema", node=node)


def compose(config_name: str, overrides: list[str] = ()) -> Any:
    """The typed config `config_name` composed from conf/ with Hydra `overrides`, exactly as the stage's
    entry point builds it (its dataclass, `__post_init__` checks run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return OmegaConf.to_object(hydra_compose(config_name=config_name, overrides=list(overrides)))
    finally:
        GlobalHydra.instance().clear()


def stage_main(config_name: str) -> Callable[[Callable[[Any], Any]], Callable[[], None]]:
    """Decorate a stage function taking its typed config into a Hydra entry point."""
    import hydra
    from omegaconf import DictConfig, OmegaConf

    def wrap(fn: Callable[[Any], Any]) -> Callable[[], None]:
        register()

        @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
        @functools.wraps(fn)
        def hydra_main(cfg: DictConfig) -> None:
            try:
                config = OmegaConf.to_object(cfg)
                if config_name == "expert_iteration" and (folder := sweep_folder(sys.argv[1:])):
                    config.run_dir = str(Path(config.run_dir) / folder)
                fn(config)
            except USER_ERRORS as e:
                logging.getLogger(fn.__module__).debug("user error", exc_info=True)
                _fail(e)

        def main() -> None:
            check_overrides(config_name, sys.argv[1:])
            hydra_main()

        return main

    return wrap


def sweep_folder(argv: list[str]) -> str | None:
    """In a --multirun sweep, this job's own subfolder of run_dir, named by the swept values
    ("seed=1", "seed=1,verifier.loss=bce"), so that the jobs of a sweep of the main job never share a
    run; None outside a sweep, or when only run_dir is swept."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    hydra = HydraConfig.get()
    if hydra.mode is not RunMode.MULTIRUN:
        return None
    given = [a for a in argv if "=" in a and not a.startswith(("-", "hydra.", "hydra/", "+hydra", "~hydra"))]
    swept = {o.key_or_group for o in OverridesParser.create().parse_overrides(given) if o.is_sweep_override()}
    mine = [o for o in hydra.overrides.task if o.split("=", 1)[0] in swept - {"run_dir"}]
    return ",".join(mine).replace("/", "_") or None


def check_overrides(config_name: str, argv: list[str]) -> Any:
    """Compose the config with the command line's overrides once before Hydra does, so a bad group
    option or value fails with one line (Hydra's own report spans a dozen); returns the config, or
    None for sweeps and flags that are Hydra's to handle."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [a for a in argv if not a.startswith(("-", "hydra.", "hydra/", "+hydra", "~hydra"))]
    if any(a.startswith("-") for a in argv):
        return None  # --multirun sweeps (a=1,2), --help, --cfg, ...: Hydra's to expand
    try:
        return compose(config_name, overrides)
    except (HydraException, OmegaConfBaseException, *USER_ERRORS) as e:
        _fail(e)


def _fail(e: BaseException) -> None:
    print(f"error: {_one_line(e)}", file=sys.stderr)
    sys.exit(2)


_NOISE = ("full_key:", "reference_type=", "object_type=", "Config search path", "provider=", "Set the environment")


def _one_line(e: BaseException | None) -> str:
    """One line from an exception and its causes: OmegaConf/Hydra reports folded, key dumps dropped."""
    parts: list[str] = []
    while e is not None and len(parts) < 3:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith(_NOISE)]
        if any(ln.startswith("Available options") for ln in lines):
            k = next(i for i, ln in enumerate(lines) if ln.startswith("Available options"))
            lines = [f"{'; '.join(lines[:k])}; available: {', '.join(lines[k + 1:])}"]
        if lines and lines[0] not in parts:
            parts.append(lines[0])
        e = e.__cause__
    return ": ".join(parts) or "unknown error"
