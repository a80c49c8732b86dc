"""`python -m tcpdoctor`: the same as the `tcpdoctor` command."""

from tcpdoctor.cli import main

main()
