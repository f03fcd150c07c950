"""Run one management command in this process and report how long it took (bench helper).

``python -m bench.command <command> [args…]`` sets Django up, times ``call_command`` alone
(not the interpreter start), and writes ``BENCH_SECONDS <s>`` to stderr. The parent runs it as
a child process to read its peak memory (``os.wait4``'s ``ru_maxrss``).
"""

from __future__ import annotations

import sys
import time


def main() -> int:
    import django

    django.setup()
    from django.core.management import call_command

    t0 = time.perf_counter()
    call_command(*sys.argv[1:])
    sys.stdout.flush()
    print(f"BENCH_SECONDS {time.perf_counter() - t0:.6f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
