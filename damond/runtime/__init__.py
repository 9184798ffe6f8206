"""The running daemon: context loops, supervision, reload, systemd and logging."""
