"""``python -m hitchhiker.book.pvae [merge] [--shard K/N] ...``: the grid command (see :mod:`.grid`)."""
from .grid import main

main()
