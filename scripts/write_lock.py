"""Write requirements/lock-cpu.txt: an == pin for every package installed in a venv whose tests passed.

    python scripts/write_lock.py VENV_PYTHON [OUT]     (`make lock` runs it on the `make test-latest` venv)

The file is a pip constraints file: `make install` passes it with -c, so each package that install asks
for gets exactly the locked version, and a package it does not ask for (the test tools, for the demo)
is not installed. forumtune itself is left out, and so are torch's CUDA libraries (nvidia-*), which the
CPU build that the lock is made with does not have. torch's local label (+cpu) is dropped so that the
CUDA build of the same version, installed first on a GPU machine, satisfies the pin too.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

LEFT_OUT = re.compile(r"^(forumtune|nvidia-[\w-]+|cuda-[\w-]+)==", re.IGNORECASE)
LOCAL_LABEL = re.compile(r"^(torch|torchvision|torchaudio)==([^+\s]+)\+\S+$", re.IGNORECASE)


def locked_lines(venv_python: str) -> list[str]:
    frozen = subprocess.run(
        [venv_python, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = []
    for line in frozen.splitlines():
        if not line or line.startswith("#") or LEFT_OUT.match(line) or "==" not in line:
            continue
        pins.append(LOCAL_LABEL.sub(r"\1==\2", line))
    return sorted(pins, key=str.lower)


def main() -> None:
    venv_python = sys.argv[1]
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "requirements/lock-cpu.txt")
    version = subprocess.run(
        [venv_python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    header = [
        "# The versions `make install` / `make test` install (pip constraints). Generated: do not edit by hand;",
        '# refresh with `make test-latest && make lock` (README, "Installs").',
        (
            f"# Tested {date.today().isoformat()} on Python {version}, {platform.system()} {platform.machine()}, "
            "with the CPU build of torch."
        ),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join([*header, *locked_lines(venv_python)]) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
