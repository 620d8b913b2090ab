"""``python -m rpol_edge`` runs the CLI; torchrun launches it as ``torchrun ... -m rpol_edge fit``."""

from rpol_edge.cli.app import main

if __name__ == "__main__":
    main()
