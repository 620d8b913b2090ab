"""Peak resident memory of a benchmark's child process, measured the one way the bench measures it:
VmHWM (``rpol_edge.bench.stats.peak_rss_mb``), read by the child itself at exit. Not ru_maxrss:
Linux keeps ru_maxrss across exec, so a spawned child would report at least its parent's peak."""

from __future__ import annotations

AT_EXIT = """
import atexit as _atexit, sys as _sys
def _report_peak():  # imported only at exit, after everything measured
    from rpol_edge.bench.stats import peak_rss_mb
    _sys.stderr.write("PEAK_RSS_MB %.1f\\n" % peak_rss_mb())
    _sys.stderr.flush()
_atexit.register(_report_peak)
"""
"""Code a ``python -c`` child runs first: at exit it writes its peak as a ``PEAK_RSS_MB`` line on stderr."""


def reported_peak_mb(stderr: str) -> float:
    """The peak a child wrote with ``AT_EXIT``; ValueError when it wrote none."""
    peaks = [float(ln.split()[1]) for ln in stderr.splitlines() if ln.startswith("PEAK_RSS_MB ")]
    if not peaks:
        raise ValueError("the child reported no peak memory (did it run AT_EXIT?)")
    return peaks[-1]
