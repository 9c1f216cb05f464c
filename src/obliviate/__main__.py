import sys

from obliviate.cli import main

sys.exit(main())
