"""spark-submit entry point for `tre-link demo`: spark-submit jobs/demo.py --config conf/demo.yaml"""

import sys

from tre_link.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
