"""Build the distribution and use it as someone who installs it from the package index would.

    bash scripts/package.sh          # sets up .venvs/package (build, twine) and runs this

1. ``python -m build``: the sdist and the wheel, from a copy of the files git would
   commit, into a temporary directory.
2. ``twine check --strict`` on both.
3. What they hold: the wheel every file of ``src/mailer`` (migrations, templates, static
   files, translations) and its licence; the sdist also the demo, the docs and the tests.
4. A fresh virtualenv installs the wheel, with its dependencies from the package index,
   and resolves every extra there (``--dry-run``): each requirement names a distribution
   that exists, in a version that fits.
5. From that virtualenv, in an empty directory with no PYTHONPATH (the checkout is not on
   ``sys.path``), the demo of the unpacked sdist runs: the tour delivers its mail; the
   admin demo serves the admin's pages and static files from the installed package, and
   SIGTERM stops it, its temporary directory removed.

Exits non-zero, saying what failed, if anything does.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this script's own helpers only; the demo runs without it

from tests.admin_site import AdminSite, free_port  # noqa: E402

NAME = "django-mailroom"
EXTRAS = "postgres,mysql,tasks,test,lint,docs"
# What the sdist carries besides the package: enough to try it, test it, build its docs.
SDIST_FILES = ["LICENSE", "README.md", "CHANGELOG.rst", "pyproject.toml", "MANIFEST.in"]
SDIST_FOLDERS = ["src/mailer", "demo", "docs", "tests"]


class Failed(Exception):
    """A check did not hold."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise Failed(message)


def run(argv: list[str | Path], timeout: float = 300, **options: Any) -> str:
    """Run a command to its end; its output, or Failed with it."""
    shown = " ".join(str(arg) for arg in argv)
    print(f"$ {shown}", flush=True)
    result = subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        **options,
    )
    if result.returncode != 0:
        raise Failed(f"{shown} exited with {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise Failed(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.3)


def tracked(*paths: str) -> set[str]:
    """The files git knows under ``paths``, relative to the checkout."""
    return set(run(["git", "-C", ROOT, "ls-files", "--", *paths]).split())


def version() -> str:
    found = re.search(
        r'^__version__ = "([^"]+)"', (ROOT / "src/mailer/__init__.py").read_text(), re.M
    )
    check(found, "src/mailer/__init__.py sets no __version__")
    assert found
    return found[1]


def build(dist: Path, release: str, source: Path) -> tuple[Path, Path]:
    """Build from a copy of what git would commit: an egg-info or build/ folder left in the
    checkout (editable installs make one) would otherwise add files the rules leave out."""
    listed = run(["git", "-C", ROOT, "ls-files", "--cached", "--others", "--exclude-standard"])
    for name in listed.split():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "build", "--outdir", dist, source])
    stem = f"{NAME.replace('-', '_')}-{release}"
    sdist, wheel = dist / f"{stem}.tar.gz", dist / f"{stem}-py3-none-any.whl"
    check(sdist.exists() and wheel.exists(), f"expected {sdist.name} and {wheel.name}")
    print(run([sys.executable, "-m", "twine", "check", "--strict", sdist, wheel]), end="")
    return sdist, wheel


def check_wheel(wheel: Path, release: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"{NAME.replace('-', '_')}-{release}.dist-info"
        metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
    package = {name.removeprefix("src/") for name in tracked("src/mailer")}
    missing = sorted(package - names)
    check(not missing, f"the wheel lacks {missing}")
    strays = sorted(n for n in names if not n.startswith(("mailer/", f"{info}/")))
    check(not strays, f"the wheel holds files outside the package: {strays}")
    check(f"{info}/licenses/LICENSE" in names, "the wheel carries no LICENSE")
    check(metadata["Name"] == NAME, f"the wheel's name is {metadata['Name']}")
    check(metadata["Version"] == release, f"the wheel's version is {metadata['Version']}")
    check(metadata["License-Expression"] == "MIT", "the wheel states no MIT licence")
    kinds = {
        "migrations": sum(1 for n in names if re.match(r"mailer/migrations/\d{4}_.*\.py$", n)),
        "templates": sum(1 for n in names if n.startswith("mailer/templates/")),
        "static files": sum(1 for n in names if n.startswith("mailer/static/")),
        "translations": sum(1 for n in names if n.startswith("mailer/locale/")),
    }
    print(
        f"wheel: {len(package)} files of src/mailer, "
        + ", ".join(f"{v} {k}" for k, v in kinds.items())
    )


def check_sdist(sdist: Path, release: str) -> None:
    top = f"{NAME.replace('-', '_')}-{release}/"
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(top) for name in archive.getnames()}
    missing = sorted((set(SDIST_FILES) | tracked(*SDIST_FOLDERS)) - names)
    check(not missing, f"the sdist lacks {missing}")
    print(f"sdist: {len(names)} entries, with the demo, the docs and the tests")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would point Python or Django at the checkout."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("MAILER_")}
    return {**env, **extra}


def install(wheel: Path, venv: Path, elsewhere: Path) -> Path:
    """A fresh virtualenv with the wheel; its Python."""
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    options = {"cwd": elsewhere, "env": clean_env()}
    run([*pip, "install", "-q", wheel, "aiosmtpd>=1.4.6"], **options)  # aiosmtpd: the demo's
    run([*pip, "check"], **options)
    report = venv.parent / "extras.json"
    run([*pip, "install", "-q", "--dry-run", "--ignore-installed", "--report", report,
         f"{wheel}[{EXTRAS}]"], **options)  # fmt: skip
    resolved = sorted(
        item["metadata"]["name"] for item in json.loads(report.read_text())["install"]
    )
    print(f"extras [{EXTRAS}] resolve to {len(resolved)} distributions: {', '.join(resolved)}")
    return python


def tour(python: Path, demo: Path, elsewhere: Path, tmp: Path) -> None:
    out = run([python, demo / "run.py"], timeout=180, cwd=elsewhere, env=clean_env(TMPDIR=str(tmp)))
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip()
    check(f"from {site}/mailer\n" in out, f"the tour did not import mailer from {site}:\n{out}")
    received = re.findall(r"^   \d+\. .* from ", out, re.M)
    check(len(received) == 7 and "Queue left: 0 messages." in out, f"the tour:\n{out}")
    check(not list(tmp.iterdir()), f"the tour left {list(tmp.iterdir())}")
    print(f"tour: 7 messages delivered by mailer from {site}")


def admin(python: Path, demo: Path, elsewhere: Path, tmp: Path) -> None:
    port = free_port()
    log = elsewhere / "admin.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [python, demo / "run.py", "admin", "--no-worker", "--port", str(port)],
            cwd=elsewhere,
            env=clean_env(TMPDIR=str(tmp)),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        site = AdminSite(f"http://127.0.0.1:{port}")
        wait_until(lambda: server.poll() is not None or site.answers(), 180, "the admin demo")
        check(server.poll() is None, f"the admin demo exited:\n{log.read_text()}")
        site.log_in("admin")
        check("Queue dashboard" in site.get("/admin/mailer/message/dashboard/"), "no dashboard")
        check(site.rows("/admin/mailer/message/"), "the message list is empty")
        check('class="mailer-preview"' in site.message_page("Spring sale"), "no HTML preview")
        css = (ROOT / "src/mailer/static/mailer/admin.css").read_text()
        check(site.get("/static/mailer/admin.css") == css, "admin.css is not served")
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        check(code == 128 + signal.SIGTERM, f"SIGTERM ended the admin demo with {code}")
        check(not list(tmp.iterdir()), f"the admin demo left {list(tmp.iterdir())}")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    print("admin: dashboard, lists, HTML preview and static files served; SIGTERM cleaned up")


def main() -> int:
    started = time.monotonic()
    release = version()
    with tempfile.TemporaryDirectory(prefix="mailer-package-") as work:
        base = Path(work)
        dist, elsewhere, tmp = base / "dist", base / "elsewhere", base / "tmp"
        for folder in (elsewhere, tmp):
            folder.mkdir()
        try:
            sdist, wheel = build(dist, release, base / "source")
            check_wheel(wheel, release)
            check_sdist(sdist, release)
            with tarfile.open(sdist) as archive:
                archive.extractall(base / "unpacked", filter="data")
            demo = base / "unpacked" / f"{NAME.replace('-', '_')}-{release}" / "demo"
            python = install(wheel, base / "venv", elsewhere)
            tour(python, demo, elsewhere, tmp)
            admin(python, demo, elsewhere, tmp)
        except (Failed, AssertionError, subprocess.SubprocessError, OSError) as error:
            print(f"FAILED: {error}", file=sys.stderr)
            return 1
    print(
        f"{NAME} {release}: built, checked, installed and run in {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
