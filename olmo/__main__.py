import sys

from olmo.cli import main

sys.exit(main())
