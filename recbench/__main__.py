"""``python -m recbench`` runs the command-line interface."""

from recbench.cli import main

if __name__ == "__main__":
    main()
