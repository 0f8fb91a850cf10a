"""`python -m agentrun_core.auth hash TOKEN | generate USER [--role ROLE]`."""

import sys

from agentrun_core.auth.tokens import main

sys.exit(main())
