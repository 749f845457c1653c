"""spark-submit entry point for `tre-link blocking-report`: spark-submit jobs/blocking_report.py --config conf/demo.yaml"""

import sys

from tre_link.cli import main

if __name__ == "__main__":
    sys.exit(main(["blocking-report", *sys.argv[1:]]))
