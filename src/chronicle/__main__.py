import sys

from chronicle.cli import main

sys.exit(main())
