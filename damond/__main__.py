"""The ``damond`` command (``python -m damond`` and the installed script).

For ``damond run``, SIGHUP is caught before anything heavy is imported: a
reload requested while the daemon starts must not end it.
"""

import sys


def main() -> int:
    if sys.argv[1:2] == ["run"]:
        from damond.runtime.hangup import catch_hangup

        catch_hangup()
    from damond.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
