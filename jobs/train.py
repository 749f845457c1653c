"""spark-submit entry point for `tre-link train`: spark-submit jobs/train.py --config conf/demo.yaml"""

import sys

from tre_link.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
