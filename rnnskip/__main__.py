"""python -m rnnskip: the rnnskip command."""
from .cli import main

if __name__ == "__main__":
    main(prog_name="rnnskip")
