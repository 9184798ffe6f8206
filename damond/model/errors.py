"""The errors a backend raises, which the runtime and the CLI turn into retries or exit codes."""


class BackendError(Exception):
    """A backend operation failed; the context loop backs off and retries."""


class EnvironmentRefused(Exception):
    """This host cannot be driven (no DAMON, a foreign kdamond, no permission).

    The daemon exits 3 with this message and has written nothing.
    """
