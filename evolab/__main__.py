import sys

from evolab.cli.main import main

sys.exit(main())
