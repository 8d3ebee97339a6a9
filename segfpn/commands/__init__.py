"""Analysis commands reached as ``segfpn <command>`` (see ``segfpn.cli.TOOLS``)."""
