"""spark-submit entry point for `tre-link refresh`: spark-submit jobs/refresh.py --config conf/demo.yaml"""

import sys

from tre_link.cli import main

if __name__ == "__main__":
    sys.exit(main(["refresh", *sys.argv[1:]]))
