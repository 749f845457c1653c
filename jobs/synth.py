"""spark-submit entry point for `tre-link synth`: spark-submit jobs/synth.py --config conf/demo.yaml"""

import sys

from tre_link.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
