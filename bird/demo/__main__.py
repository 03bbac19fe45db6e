"""`python -m bird.demo [--target DIR]`: build the demo dataset if needed, print its root."""

from __future__ import annotations

import argparse
from pathlib import Path

from bird.demo import default_cache_dir, materialize


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bird.demo", description=__doc__)
    parser.add_argument(
        "--target",
        type=Path,
        default=None,
        help=f"folder that holds builds (default {default_cache_dir()})",
    )
    print(materialize(parser.parse_args().target))


if __name__ == "__main__":
    main()
