"""spark-submit entry point for `tre-link evaluate`: spark-submit jobs/evaluate.py --config conf/demo.yaml"""

import sys

from tre_link.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
