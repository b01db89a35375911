"""The b24sync command line: thin wrappers that parse options and call the jobs.

Each command group lives in its own section below; keep commands thin and put the work in jobs/.
"""

from __future__ import annotations

import logging
import sys

import click


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
@click.version_option(package_name="b24sync")
def main(verbose: int) -> None:
    """b24sync: Bitrix24 pipelines as code, a CRM mirror in SQL, funnel reports, and a local emulator."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------- emulator (issue 2)


# ---------------------------------------------------------------- call (issue 3)


# ---------------------------------------------------------------- provision (issue 4)


if __name__ == "__main__":
    main()
