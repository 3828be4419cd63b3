import sys

from esc_deploy.cli import main

sys.exit(main())
