import signal
import sys

from evolab.cli.main import main


def _stop(signum, frame):
    # `kill PID` (SIGTERM) stops a run as Ctrl-C does: the calls in flight are stored, the run lease is released,
    # and `resume` can go on at once instead of waiting for the lease to expire.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _stop)
sys.exit(main())
