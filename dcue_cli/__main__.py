"""`python -m dcue_cli` (also what `torchrun -m dcue_cli train ...` runs)."""

from dcue_cli.cli import main

if __name__ == "__main__":
    main()
