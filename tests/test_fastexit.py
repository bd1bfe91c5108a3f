"""initsweep.tracking.fastexit: a process that skips the interpreter's teardown still does what a normal exit does."""

import subprocess
import sys
import textwrap

import pytest

from initsweep.tracking.fastexit import exit_code

SCRIPT = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from initsweep.tracking.fastexit import exit_now

    def late():
        time.sleep(0.3)
        print("thread done", flush=False)

    threading.Thread(target=late).start()  # non-daemon: a normal exit waits for it
    atexit.register(lambda: print("atexit ran"))
    sys.stdout.write("buffered, not flushed")
    exit_now({code})
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(("code", "status"), [("0", 0), ("3", 3), ("None", 0), ("'bad thing'", 1)])
def test_exit_now_joins_threads_runs_atexit_flushes_and_keeps_the_status(code: str, status: int) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(code=code)], capture_output=True, text=True)
    assert out.returncode == status
    assert out.stdout.index("buffered, not flushed") < out.stdout.index("thread done") < out.stdout.index("atexit ran")
    assert ("bad thing" in out.stderr) == (status == 1)


def test_exit_code_follows_sys_exit() -> None:
    assert [exit_code(None), exit_code(0), exit_code(130)] == [0, 0, 130]
