"""spark-submit entry point for `tre-link review`: spark-submit jobs/review.py sample --config conf/demo.yaml"""

import sys

from tre_link.cli import main

if __name__ == "__main__":
    sys.exit(main(["review", *sys.argv[1:]]))
