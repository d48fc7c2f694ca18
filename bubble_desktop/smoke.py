"""`bubble --smoke-test`: placeholder until the packaging issue fills it in."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    print("smoke test: not implemented yet")
    return 0
