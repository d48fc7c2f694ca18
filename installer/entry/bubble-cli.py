"""Entry script of the frozen command-line tool (`bubble-cli`, console); see bubble.spec."""

import multiprocessing
import sys

from bubble_desktop.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen child process must not start a second CLI
    sys.exit(main())
