"""The CLI's commands, one module per group; main.py assembles them."""
