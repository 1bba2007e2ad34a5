"""The same bits on this CPU? Runs the kernel-equality and invariance tests
here and prints one Markdown row for the README's table of checked CPUs
(issue 14: whenever another CPU generation is at hand, run them there and
record the CPU, the kernel fingerprint and the result).

    python bench/cpu_check.py              # the tests, then the row
    python bench/cpu_check.py --no-tests   # the CPU and fingerprint alone

The tests compare the compiled kernels with the numpy reference bit for bit
(tests/test_fused.py, test_elementary.py, test_kernel.py, test_exact.py,
test_categorical.py, test_multinomial.py), the same model on any
partitioning, worker count and cache mode (test_invariance.py), and the
model digests recorded on other machines (test_golden.py: the same bits
here as there). The fingerprint digest is the one workers compare before
they join a job (pipeline.probe.kernel_fingerprint): equal digests, equal
bits; it is pinned in tests/test_golden.py as well.
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
from pathlib import Path

from llvmlite import binding

from pipeline.probe import kernel_fingerprint

ROOT = Path(__file__).resolve().parent.parent
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
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else result.stderr.strip().splitlines()[-1]
    return result.returncode, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-tests", action="store_true", help="print the CPU and fingerprint only")
    args = parser.parse_args()
    name, flags = cpu_model()
    fingerprint = kernel_fingerprint()
    print(f"CPU: {name} ({platform.machine()}; {', '.join(flags) or 'no notable flags'})")
    print(f"numpy {fingerprint['numpy']} dispatches: {', '.join(fingerprint['cpu_dispatch']) or 'nothing'}")
    print(f"numba {fingerprint['numba']} compiles for: {binding.get_host_cpu_name()}")
    print(f"kernel fingerprint: {fingerprint['digest']} (fused kernel: {fingerprint['fused_kernel']})")
    if args.no_tests:
        return 0
    status, summary = run_tests()
    print(f"exactness tests: {summary}")
    print()
    print("| CPU | flags | numpy dispatch | fingerprint | exactness tests |")
    print("| --- | --- | --- | --- | --- |")
    dispatch = ", ".join(fingerprint["cpu_dispatch"]) or "none"
    print(f"| {name} | {', '.join(flags)} | {dispatch} | `{fingerprint['digest']}` | {summary} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
