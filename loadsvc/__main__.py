import sys

from loadsvc.cli import main

sys.exit(main())
