"""Entry script of the frozen desktop app (`bubble`, windowed); see bubble.spec."""

import multiprocessing
import os
import sys

# A windowed Windows exe has no console: sys.stdout/sys.stderr are None, and anything that writes to
# them (tqdm progress bars while transformers loads weights, warnings, print) would raise. Send such
# output nowhere instead; the app's own log file and the smoke test's --report still work.
for _name in ("stdout", "stderr"):
    if getattr(sys, _name) is None:
        setattr(sys, _name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - lives as long as the app

from bubble_desktop.app import main  # noqa: E402

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen child process must not start a second app
    sys.exit(main())
