"""Scheduled runs: agents' `schedule:` front matter (parse), cron times (cron), what to do at a tick (plan), the
claims and pause state shared through RunsService (store), and the loop that starts one run per tick (scheduler)."""
