"""Entry script of the frozen desktop app (`bubble`, windowed); see bubble.spec."""

import multiprocessing
import sys

from bubble_desktop.app import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen child process must not start a second app
    sys.exit(main())
