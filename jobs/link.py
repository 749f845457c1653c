"""spark-submit entry point for `tre-link link`: spark-submit jobs/link.py --config conf/demo.yaml"""

import sys

from tre_link.cli import main

if __name__ == "__main__":
    sys.exit(main(["link", *sys.argv[1:]]))
