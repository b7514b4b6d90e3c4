"""Run directories: their format (rundir) and older formats (migration), how one is written
(outputs, staging) and finished (finish, card), and how one is opened for use (api)."""
