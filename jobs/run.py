"""spark-submit entry point for `tre-link run`: spark-submit jobs/run.py --config conf/demo.yaml"""

import sys

from tre_link.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
