import sys

from moga.cli import main

sys.exit(main())
