import sys

from gandist.cli import main

sys.exit(main())
