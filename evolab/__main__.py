import signal
import sys

from evolab.cli.main import main


def _stop(signum, frame):
    # `kill PID` (SIGTERM) stops a run as Ctrl-C does: the calls in flight are stored, the run lease is released,
    # and `resume` can go on at once instead of waiting for the lease to expire. Inside asyncio.run, Ctrl-C's
    # handler is asyncio's own, which cancels the main task at its await: a KeyboardInterrupt raised here instead
    # lands between any two bytecodes (inside the event loop, a lock, a callback) and can leave the loop's
    # shutdown waiting forever, which is how `kill` once hung a run. So SIGTERM takes the same path as Ctrl-C.
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    if callable(on_ctrl_c) and on_ctrl_c is not signal.default_int_handler:
        on_ctrl_c(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _stop)
sys.exit(main())
