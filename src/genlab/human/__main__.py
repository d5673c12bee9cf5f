"""``python -m genlab.human serve|report|export|simulate ...``: the ``genlab hype`` commands
through an entry point that does not import torch, so that a server restarts in well under a
second (``genlab hype serve`` itself loads the whole library first). Creating a study from run
directories still imports what sampling needs."""

from __future__ import annotations

import argparse
import sys

from genlab.human.cli import DESCRIPTION, EXAMPLES, fill_parser, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genlab.human", description=DESCRIPTION, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    fill_parser(p)
    args = p.parse_args(argv)
    try:
        return run(args) or 0
    except (ValueError, FileNotFoundError) as err:
        print(f"genlab hype {args.hype_command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
