"""Peak memory of the running process, for the benchmarks' child processes (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (clear_refs 5); False where
    the kernel does not allow it (the peak then counts from the process's start)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def status_kb(field: str) -> int:
    """A memory field of /proc/self/status in kB: VmRSS (now) or VmHWM (peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)
