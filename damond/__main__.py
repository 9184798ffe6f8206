import sys

from damond.cli import main

sys.exit(main())
