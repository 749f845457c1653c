"""spark-submit entry point for `tre-link standardise`: spark-submit jobs/standardise.py --config conf/demo.yaml"""

import sys

from tre_link.cli import main

if __name__ == "__main__":
    sys.exit(main(["standardise", *sys.argv[1:]]))
