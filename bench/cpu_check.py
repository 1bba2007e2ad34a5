"""The same bits on this CPU? Runs the kernel-equality and invariance tests
here and prints one Markdown row for the README's table of checked CPUs
(issue 14: whenever another CPU generation is at hand, run them there and
record the CPU, the kernel fingerprint and the result).

    python bench/cpu_check.py              # the tests, then the row
    python bench/cpu_check.py --no-tests   # the CPU and fingerprint alone

The tests compare the compiled kernels with the numpy reference bit for bit
(tests/test_fused.py, test_kernel.py, test_exact.py, test_categorical.py,
test_multinomial.py; test_elementary.py checks the exp/log against mpmath
too, and the same bits with numpy's SIMD dispatch off and numba compiling
for a generic x86-64), the same model on any
partitioning, worker count and cache mode (test_invariance.py), and the
model digests recorded on other machines (test_golden.py: the same bits
here as there). The fingerprint is the one workers compare before they
join a job (pipeline.probe.kernel_fingerprint: the numpy reference's exact
sums and the pipeline's own sigmoid/softplus on a fixed input, hashed with
the library versions); its outputs digest, without the versions, is pinned
in tests/test_golden.py. The probe runs the numpy reference, not the
compiled kernels: that those give the reference's bits here is what the
tests check.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import subprocess
import sys
from pathlib import Path

from llvmlite import binding
from numba.core import config as numba_config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.probe import kernel_fingerprint  # noqa: E402

#: the exactness tests: compiled == reference, invariance, golden digests
TEST_FILES = (
    "tests/test_fused.py",
    "tests/test_elementary.py",
    "tests/test_kernel.py",
    "tests/test_exact.py",
    "tests/test_categorical.py",
    "tests/test_multinomial.py",
    "tests/test_invariance.py",
    "tests/test_golden.py",
)
#: the instruction-set extensions worth naming (Linux's /proc/cpuinfo flags)
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_fp16", "amx_tile", "asimd", "sve")


def cpu_model() -> tuple[str, list[str]]:
    """The CPU's name and its notable flags (Linux; elsewhere what platform says)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    name = re.search(r"^(model name|Model)\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^(flags|Features)\s*:\s*(.+)$", text, re.MULTILINE)
    found = set(flags.group(2).split()) if flags else set()
    return (name.group(2).strip() if name else platform.machine()), [f for f in NOTABLE_FLAGS if f in found]


def run_tests() -> tuple[int, str]:
    """pytest on :data:`TEST_FILES` (two processes): its exit status and summary line."""
    command = [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadfile", *TEST_FILES]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else f"pytest exited {result.returncode} and printed nothing"
    return result.returncode, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-tests", action="store_true", help="print the CPU and fingerprint only")
    args = parser.parse_args()
    name, flags = cpu_model()
    fingerprint = kernel_fingerprint()
    print(f"CPU: {name} ({platform.machine()}; {', '.join(flags) or 'no notable flags'})")
    print(f"numpy {fingerprint['numpy']} dispatches: {', '.join(fingerprint['cpu_dispatch']) or 'nothing'}")
    target = numba_config.CPU_NAME or binding.get_host_cpu_name()
    print(f"numba {fingerprint['numba']} compiles for: {target}")
    versions = f"numpy {fingerprint['numpy']}, numba {fingerprint['numba']}, Python {fingerprint['python']}"
    print(f"kernel fingerprint: {fingerprint['digest']} ({versions}); probe outputs: {fingerprint['outputs']}")
    if args.no_tests:
        return 0
    status, summary = run_tests()
    print(f"exactness tests: {summary}")
    print()
    print("| date | CPU | flags | numpy dispatch | numba target | probe outputs | fingerprint | exactness tests |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    dispatch = ", ".join(fingerprint["cpu_dispatch"]) or "none"
    print(
        f"| {datetime.date.today()} | {name} | {', '.join(flags)} | {dispatch} | {target} "
        f"| `{fingerprint['outputs']}` | `{fingerprint['digest']}` ({versions}) | {summary} |"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
