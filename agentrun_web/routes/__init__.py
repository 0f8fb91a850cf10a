"""HTTP routes of the web console, one module per page."""
