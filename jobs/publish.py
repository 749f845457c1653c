"""spark-submit entry point for `tre-link publish`: spark-submit jobs/publish.py --config conf/demo.yaml"""

import sys

from tre_link.cli import main

if __name__ == "__main__":
    sys.exit(main(["publish", *sys.argv[1:]]))
