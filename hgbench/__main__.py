import sys

from hgbench.cli import main

sys.exit(main())
