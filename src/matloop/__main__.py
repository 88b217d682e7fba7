import sys

from matloop.cli import main

sys.exit(main())
