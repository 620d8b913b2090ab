"""``python -m rpol_edge.cli`` runs the CLI (as ``python -m rpol_edge`` does)."""

from rpol_edge.cli.app import main

main()
