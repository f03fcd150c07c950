"""Run one management command in this process and report how long it took (bench helper).

``python -m bench.command <command> [args…]`` sets Django up, times ``call_command`` alone
(not the interpreter start), and writes ``BENCH_SECONDS <s>`` and ``BENCH_PEAK_KB <kB>`` to
stderr. The peak is ``VmHWM`` of ``/proc/self/status``: the high-water mark of this program's own
memory. (``ru_maxrss`` would not do: on Linux it survives ``exec`` and so reports the forking
parent's size when that is larger.)
"""

from __future__ import annotations

import sys
import time


def peak_kb() -> int:
    """This process's peak resident set size in kB (``VmHWM``); 0 where /proc has none."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> int:
    import django

    django.setup()
    from django.core.management import call_command

    t0 = time.perf_counter()
    call_command(*sys.argv[1:])
    sys.stdout.flush()
    print(f"BENCH_SECONDS {time.perf_counter() - t0:.6f}", file=sys.stderr)
    print(f"BENCH_PEAK_KB {peak_kb()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
