"""`python -m swiftcli ...`, the same as the `swiftcli` command."""

from swiftcli.cli.main import main

if __name__ == "__main__":  # engine workers may re-import this module
    main()
