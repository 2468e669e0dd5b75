import sys

from cxlemu.cli.main import main

sys.exit(main())
